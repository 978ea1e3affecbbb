"""The floating IP follows the Raft leader: real daemons in network
namespaces, a client in its own namespace sending to the floating address
while the leader is killed, restarted and moved."""
import signal
import time

from fleet import fleet, holders, leader, send, wait_holders  # noqa: F401

def test_floating_ip_follows_the_leader(fleet):
    f = fleet
    first = leader(f)
    st = f.net.api("n%d" % first, "POST", "/v1/policy", {"customers": [
        {"name": "default", "networks": [f.net.subnet + ".0/24"]}]})
    assert st and st.get("ok"), st
    wait_holders(f, [first])
    code, peer, text = send(f)
    assert code == 250, text

    # SIGKILL the leader: the next one takes the address.
    f.procs[first].kill()
    f.procs[first].wait()
    t0 = time.time()
    while True:
        code, peer, text = send(f)
        if code == 250:
            break
        assert time.time() - t0 < 20, text
    outage = time.time() - t0
    second = leader(f, exclude=(first,))
    assert f.net.has_addr("n%d" % second, f.floating)
    print("outage after leader kill: %.3f s" % outage)

    # The killed node's namespace still has the address (the process died,
    # not the machine); restarting the node removes it.
    f.start(first)
    wait_holders(f, [second])

    # A leadership transfer moves the address too. Ask the node that just
    # restarted, as soon as its admin API answers: it may not know the
    # leader yet, and then holds the request until it does.
    target = first
    deadline = time.time() + 20
    while f.net.api("n%d" % target, "GET", "/v1/status") is None:
        assert time.time() < deadline
        time.sleep(0.02)
    st = f.net.api("n%d" % target, "POST", "/v1/leader/transfer",
                   {"id": target})
    assert st and st.get("ok"), st
    wait_holders(f, [target])
    assert leader(f) == target
    code, peer, text = send(f)
    assert code == 250, text

    # A clean stop gives the address up.
    f.procs[target].send_signal(signal.SIGTERM)
    f.procs[target].wait(timeout=10)
    assert not f.net.has_addr("n%d" % target, f.floating)
    third = leader(f, exclude=(target,))
    wait_holders(f, [third])
    assert "event=floating_ip_released" in f.log(target)
