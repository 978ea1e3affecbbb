"""Body repair: a holder that lost its bodies gets them back from other
holders, and messages whose holders left the cluster get new copies."""
import shutil
import time
import urllib.parse

from smtp_util import code_of, send


def message(node, code):
    st, m = node.api("GET", "/v1/messages/" + urllib.parse.quote(code, safe=""))
    assert st == 200, m
    return m


def inject(c, n):
    codes = []
    for i in range(n):
        code, text = send(c.nodes[i % len(c.nodes)].smtp_port)
        assert code == 250
        codes.append(code_of(text))
    c.wait_converged()
    return codes


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_replaced_machine_gets_its_bodies_back(make_cluster):
    c = make_cluster(n=3).start()
    codes = inject(c, 120)
    leader = c.wait_leader()
    victim = next(n for n in c.nodes if n.id != leader.id)
    mine = [x for x in codes if victim.id in message(leader, x)["holders"]]
    assert mine, "the victim holds no body"
    assert victim.status()["bodies"] >= len(mine)
    victim.kill()
    shutil.rmtree(victim.data_dir)          # the disk is gone
    victim.start()
    c.wait_converged(timeout=60)
    wait_for(lambda: victim.status()["bodies"] >= len(mine), 60,
             "bodies restored on node %d" % victim.id)
    st = victim.status()
    assert st["bodies_repaired"] >= len(mine)
    # nothing was lost or duplicated in the state
    st, listing = leader.api("GET", "/v1/messages")
    assert sorted(listing["codes"]) == sorted(codes)


def test_holders_that_left_are_replaced(make_cluster):
    c = make_cluster(n=3).start()
    leader = c.wait_leader()
    new = c.add_node(4)
    new.start()
    leader.ctl("member", "add", "4", new.raft_address)
    c.wait_converged()
    codes = inject(c, 80)
    leader = c.wait_leader()
    # remove the non-leader that holds the most bodies
    counts = {}
    for x in codes:
        for h in message(leader, x)["holders"]:
            counts[h] = counts.get(h, 0) + 1
    gone = max((n for n in c.nodes if n.id != leader.id),
               key=lambda n: counts.get(n.id, 0))
    assert counts.get(gone.id, 0) > 0
    leader.ctl("member", "remove", str(gone.id))
    gone.stop()
    rest = [n for n in c.nodes if n.id != gone.id]
    voters = {m["id"] for m in leader.status()["members"]
              if m["role"] == "voter"}
    assert gone.id not in voters

    def replicated():
        c.wait_converged(nodes=rest)
        for x in codes:
            live = set(message(leader, x)["holders"]) & voters
            if len(live) < len(voters) // 2 + 1:
                return False
        return True

    wait_for(replicated, 90, "every body on a majority of the voters")
    # the new copies are real: each new holder has the bodies it claims
    for n in rest:
        held = sum(1 for x in codes if n.id in message(leader, x)["holders"])
        assert n.status()["bodies"] >= held
