"""Durability: every message that got a 250 survives the SIGKILL of any
node, as long as a majority lives."""
import random
import smtplib
import threading
import time
import urllib.parse

from smtp_util import code_of, message

CLIENTS = 10
TARGET = 2000


class Injector:
    """CLIENTS threads sending to random live nodes until TARGET messages
    have been acknowledged; each thread reconnects on errors (as a real
    client's queue would retry)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.lock = threading.Lock()
        self.acked = []         # codes that got a 250
        self.attempts = 0       # DATA commands sent
        self.refused = 0        # 4xx answers to DATA
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(CLIENTS)]

    def run(self, i):
        rnd = random.Random(i)
        n = 0
        while not self.stop.is_set():
            with self.lock:
                if len(self.acked) >= TARGET:
                    return
            node = rnd.choice(self.cluster.nodes)
            if not node.alive:
                continue
            try:
                s = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30)
                s.ehlo("c%d" % i)
                for _ in range(20):
                    s.mail("s%d@example.com" % i)
                    s.rcpt("r%d-%d@example.org" % (i, n))
                    with self.lock:
                        self.attempts += 1
                    code, text = s.data(message(subject="%d-%d" % (i, n)))
                    n += 1
                    with self.lock:
                        if code == 250:
                            self.acked.append(code_of(text.decode()))
                        else:
                            self.refused += 1
                        if len(self.acked) >= TARGET:
                            break
                s.quit()
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)

    def start(self):
        for t in self.threads:
            t.start()

    def wait_acked(self, n, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.acked) >= n:
                    return
            time.sleep(0.05)
        raise AssertionError("only %d acknowledged" % len(self.acked))

    def join(self):
        for t in self.threads:
            t.join(timeout=600)
        self.stop.set()


def all_codes(node):
    st, res = node.api("GET", "/v1/messages", timeout=60)
    assert st == 200
    return res["codes"]


def check_all_kept(cluster, inj):
    d = cluster.wait_converged(timeout=60)
    assert len(inj.acked) == len(set(inj.acked)), "a code was given twice"
    for node in cluster.alive():
        codes = all_codes(node)
        assert len(codes) == len(set(codes))
        missing = set(inj.acked) - set(codes)
        assert not missing, "lost %d acknowledged messages, e.g. %s" % (
            len(missing), sorted(missing)[:5])
        # Nothing is kept that no client ever sent.
        assert len(codes) <= inj.attempts
    return d


def run_with_kill(cluster, pick_victim):
    inj = Injector(cluster)
    inj.start()
    inj.wait_acked(TARGET // 4)
    victim = pick_victim(cluster)
    victim.kill()
    killed_at = len(inj.acked)
    cluster.wait_leader(exclude=(victim.id,))
    inj.join()
    assert len(inj.acked) >= TARGET
    assert len(inj.acked) > killed_at
    check_all_kept(cluster, inj)
    # The killed node restarts, catches up and agrees with the others.
    victim.start()
    check_all_kept(cluster, inj)
    return inj


def test_leader_sigkill_loses_nothing(make_cluster):
    c = make_cluster(n=3).start()
    inj = run_with_kill(c, lambda cl: cl.wait_leader())
    print("acked=%d refused=%d attempts=%d" % (len(inj.acked), inj.refused,
                                               inj.attempts))


def test_follower_holding_bodies_sigkill_loses_nothing(make_cluster):
    c = make_cluster(n=3).start()

    def follower(cl):
        leader = cl.wait_leader()
        # a follower that holds bodies of acknowledged messages
        for n in cl.nodes:
            if n.id == leader.id:
                continue
            st, codes = n.api("GET", "/v1/messages?limit=50")
            for code in codes["codes"]:
                st, m = n.api("GET", "/v1/messages/" +
                              urllib.parse.quote(code, safe=""))
                if n.id in m["holders"]:
                    return n
        raise AssertionError("no follower holds a body")

    run_with_kill(c, follower)


def test_repeated_leader_kills_lose_nothing(make_cluster):
    """Three rounds of: SIGKILL the leader under load, wait for the next,
    restart the killed node. Every 250 survives all of them."""
    c = make_cluster(n=3).start()
    inj = Injector(c)
    inj.start()
    for round_ in range(3):
        inj.wait_acked(TARGET * (round_ + 1) // 4)
        leader = c.wait_leader()
        leader.kill()
        c.wait_leader(exclude=(leader.id,))
        leader.start()
    inj.join()
    assert len(inj.acked) >= TARGET
    check_all_kept(c, inj)


def test_paused_leader_never_acknowledges_after_losing_its_term(make_cluster):
    """SIGSTOP the leader past the election timeout, keep injecting on the
    others, SIGCONT it: the stale leader must step down and a session left
    open on it must not get a 250 for anything the cluster did not commit."""
    import signal
    import smtplib
    c = make_cluster(n=3, commit_timeout_ms=3000).start()
    old = c.wait_leader()
    # a session on the old leader, ready to send DATA when it wakes up
    s = smtplib.SMTP("127.0.0.1", old.smtp_port, timeout=30)
    s.ehlo("t")
    s.mail("a@b.c")
    s.rcpt("d@e.f")
    old.proc.send_signal(signal.SIGSTOP)
    try:
        new = c.wait_leader(exclude=(old.id,))
        others = [n for n in c.nodes if n.id != old.id]
        acked = []
        for i in range(20):
            from smtp_util import send
            code, text = send(others[i % 2].smtp_port)
            assert code == 250
            acked.append(code_of(text))
    finally:
        old.proc.send_signal(signal.SIGCONT)
    code, text = s.data(message(subject="to the stale leader"))
    s.close()
    # Either answer is fine, but a 250 must mean committed by the cluster.
    assert code == 250 or 400 <= code < 500, (code, text)
    if code == 250:
        acked.append(code_of(text.decode()))
    assert new.id != old.id
    c.wait_converged()
    for n in c.nodes:
        st, listing = n.api("GET", "/v1/messages")
        assert set(acked) <= set(listing["codes"])


def test_hung_follower_bodies_go_to_the_other_voter(make_cluster):
    """A follower that hangs (SIGSTOP: its sockets stay open, nothing fails)
    must not hold up acceptance: bodies whose first peer is the hung one
    are hedged to the other voter, and every message gets its 250 with
    the leader and the live follower as holders. The commit timeout (5 s)
    is far above the hedge delay, so a 4xx here means no hedge."""
    import signal
    from smtp_util import send
    c = make_cluster(n=3, commit_timeout_ms=5000).start()
    leader = c.wait_leader()
    # warm up: some pushes complete, so the hedge delay follows a real
    # round trip
    for _ in range(4):
        assert send(leader.smtp_port)[0] == 250
    hung, live = [n for n in c.nodes if n.id != leader.id]
    hung.proc.send_signal(signal.SIGSTOP)
    try:
        codes = []
        # one at a time: the first peer asked rotates, so half of these
        # go to the hung follower first
        for _ in range(8):
            code, text = send(leader.smtp_port)
            assert code == 250, (code, text)
            codes.append(code_of(text))
        for code in codes:
            st, m = leader.api("GET", "/v1/messages/" +
                               urllib.parse.quote(code, safe=""))
            assert st == 200
            assert sorted(m["holders"]) == sorted([leader.id, live.id]), m
    finally:
        hung.proc.send_signal(signal.SIGCONT)
    c.wait_converged()


def test_full_disk_gets_4xx_never_250(make_cluster, tmp_path):
    """A node whose data directory fills up answers 4xx and acknowledges
    nothing it did not keep; more space lets it accept again."""
    import subprocess
    from smtp_util import send
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs",
                    str(mnt)], check=True)
    try:
        c = make_cluster(n=1, commit_timeout_ms=2000)
        node = c.nodes[0]
        node.data_dir = str(mnt / "node1")
        node.write_config(c.nodes)
        c.start()
        big = message(body=("x" * 998 + "\r\n") * 1000)  # 1 MB
        acked, refused = [], 0
        for _ in range(80):
            code, text = send(node.smtp_port, msg=big)
            if code == 250:
                acked.append(code_of(text))
            else:
                assert 400 <= code < 500, (code, text)
                refused += 1
                if refused == 3:
                    break
        assert acked and refused == 3, (len(acked), refused)
        # exactly what was acknowledged is kept
        st, listing = node.api("GET", "/v1/messages")
        assert sorted(listing["codes"]) == sorted(acked)
        subprocess.run(["mount", "-o", "remount,size=256m", str(mnt)],
                       check=True)
        code, text = send(node.smtp_port, msg=big)
        assert code == 250, text
        c.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_write_errors_get_4xx_never_250(make_cluster):
    """Every write past 48 MB fails (RLIMIT_FSIZE with SIGXFSZ ignored: the
    kernel answers EFBIG): the body store's segment stops growing, the node
    answers 4xx and acknowledges nothing it did not keep; restarted without
    the limit, it has everything it acknowledged."""
    import resource
    import signal as sig
    from smtp_util import send

    def limit():
        sig.signal(sig.SIGXFSZ, sig.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 << 20, 48 << 20))

    c = make_cluster(n=1, commit_timeout_ms=2000)
    node = c.nodes[0]
    node.preexec = limit
    c.start()
    big = message(body=("y" * 998 + "\r\n") * 1000)  # 1 MB
    acked, refused = [], 0
    for _ in range(120):
        code, text = send(node.smtp_port, msg=big)
        if code == 250:
            acked.append(code_of(text))
        else:
            assert 400 <= code < 500, (code, text)
            refused += 1
            if refused == 3:
                break
    assert acked and refused == 3, (len(acked), refused)
    st, listing = node.api("GET", "/v1/messages")
    assert sorted(listing["codes"]) == sorted(acked)
    assert "level=warn" in open(node.log_path).read()
    node.stop()
    node.preexec = None
    node.start()
    c.wait_leader()
    st, listing = node.api("GET", "/v1/messages")
    assert sorted(listing["codes"]) == sorted(acked)
    code, text = send(node.smtp_port, msg=big)
    assert code == 250, text
