# SPDX-License-Identifier: Apache-2.0
"""The checker on synthetic histories: a good history passes every check,
and for each check a crafted bad history makes it (and only it, where the
checks are independent) fail."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checker import MEMBER_GRACE, check, details, id_ranges, topic_matches, verdict  # noqa: E402


class H:
    """A history builder with a clock that advances by 0.01 s per event."""

    def __init__(self):
        self.events = []
        self.t = 1000.0

    def __call__(self, ev, **kw):
        self.t += 0.01
        self.events.append({"t": round(self.t, 3), "ev": ev, **kw})
        return self

    def connect(self, client, node, conn=1, persistent=False, will=None):
        return self("connect", client=client, conn=conn, node=node, version=5, persistent=persistent,
                    session_present=False, **({"will": will} if will else {}))

    def sub(self, client, filt, qos=2, conn=1):
        self("subscribe", client=client, conn=conn, filter=filt, qos=qos)
        return self("suback", client=client, conn=conn, filter=filt, granted=qos)

    def pub(self, client, seq, topic, qos=1, ack=True, retain=False, rc=0):
        m = "%s:%d" % (client, seq)
        self("send", client=client, msg=m, topic=topic, qos=qos, retain=retain, seq=seq)
        if ack is True:
            self("ack", client=client, msg=m, rc=rc)
        elif ack == "refused":
            self("refused", client=client, msg=m, rc=0x97, stage="puback")
        return m

    def deliver(self, client, msg, topic, qos=1, node="node-2", conn=1, retain=False):
        return self("deliver", client=client, conn=conn, node=node, msg=msg, topic=topic, qos=qos, dup=False,
                    retain=retain)


def good():
    """Two persistent subscribers (one on node-1 that moves after node-1 is
    killed, one on node-2), a shared group, a will, retained, samples."""
    h = H()
    h.connect("s1", "node-1", persistent=True).sub("s1", "d/#")
    h.connect("s2", "node-2", persistent=True).sub("s2", "d/#")
    h.connect("w", "node-1", will="w:will")
    h.connect("ww", "node-3").sub("ww", "will/#", qos=1)
    h.connect("g1", "node-2").sub("g1", "$share/g/s/#", qos=1)
    h.connect("g2", "node-3").sub("g2", "$share/g/s/#", qos=1)
    h("clients", node="node-1", round=1, ids=["s1", "w"])
    h("clients", node="node-2", round=1, ids=["s2", "g1"])
    for i in range(3):
        for q, pub in ((1, "p"), (2, "q")):
            m = h.pub(pub, i, "d/" + pub, qos=q)
            h.deliver("s1", m, "d/" + pub, qos=q, node="node-1")
            h.deliver("s2", m, "d/" + pub, qos=q)
    m = h.pub("sp", 0, "s/x")
    h.deliver("g1", m, "s/x")
    m = h.pub("sp", 1, "s/x")
    h.deliver("g2", m, "s/x", node="node-3")
    r0 = h.pub("r", 0, "ret/a", retain=True)
    r1 = h.pub("r", 1, "ret/a", retain=True)
    h("fault", kind="kill", target="node-1", detail="SIGKILL")
    h("disconnect", client="s1", conn=1, node="node-1", rc=7)
    h("disconnect", client="w", conn=1, node="node-1", rc=7)
    h.deliver("ww", "w:will", "will/w", node="node-3")
    h.connect("s1", "node-1", conn=2, persistent=True)  # the same node, restarted: still a move
    m = h.pub("p", 3, "d/p")
    h.deliver("s1", m, "d/p", conn=2, node="node-1")
    h.deliver("s2", m, "d/p")
    h("probe", client="pr2", node="node-2", filter="ret/#")
    h.deliver("pr2", r1, "ret/a", retain=True)
    h("pub_end", client="p", sent=4, count=4, reason="done")
    assert r0
    return h


def run(h):
    return check(h.events)


def status(h):
    return {n: c["status"] for n, c in run(h)["checks"].items()}


def test_good_history_passes_every_check():
    r = run(good())
    assert {n: c["status"] for n, c in r["checks"].items()} == {
        "lost": "pass", "lost-moved": "pass", "qos2-dup": "pass", "order": "pass", "one-conn": "pass",
        "shared-once": "pass", "retained": "pass", "wills": "pass", "progress": "pass", "false-ack": "pass",
        "qos2-flow": "n/a", "msg-expiry": "n/a", "session-expiry": "n/a", "membership": "n/a", "memory": "n/a"}, r["checks"]
    c = r["counts"]
    assert (c["sent"], c["acked"], c["lost"], c["duplicated"], c["reordered"], c["refused"]) == (11, 11, 0, 0, 0, 0)
    assert verdict(r, {}) == ("pass", [])


def test_publisher_that_did_not_get_through():
    h = good()
    h("pub_end", client="q", sent=3, count=400, reason="deadline")
    assert status(h)["progress"] == "fail"
    assert run(h)["checks"]["progress"]["shown"][0].startswith("q sent 3 of 400 (deadline); its last ack")


def test_empty_history_is_not_applicable():
    r = check([])
    assert {c["status"] for c in r["checks"].values()} == {"n/a"}


def test_lost_message_for_a_subscriber_that_stayed():
    h = good()
    m = h.pub("p", 4, "d/p")
    h.deliver("s1", m, "d/p", conn=2, node="node-1")
    s = status(h)
    assert s["lost"] == "fail" and s["lost-moved"] == "pass" and s["false-ack"] == "pass"
    r = run(h)
    assert r["lost_ids"] == {"s2": "p:4"} and r["counts"]["lost"] == 1


def test_lost_message_for_a_subscriber_that_moved():
    h = good()
    for i in range(4, 8):
        m = h.pub("p", i, "d/p")
        h.deliver("s2", m, "d/p")
    s = status(h)
    assert s["lost-moved"] == "fail" and s["lost"] == "pass"
    r = run(h)
    assert r["lost_ids"] == {"s1": "p:4-7"} and r["counts"]["lost"] == 4
    assert "s1 (d/#, moved): 4 acknowledged message(s) never arrived: p:4-7" in r["checks"]["lost-moved"]["shown"]


def test_unacknowledged_or_refused_messages_are_not_lost():
    h = good()
    h.pub("p", 4, "d/p", ack=False)
    h.pub("p", 5, "d/p", ack="refused")
    r = run(h)
    assert r["checks"]["lost"]["status"] == "pass" and r["checks"]["lost-moved"]["status"] == "pass"
    assert (r["counts"]["unknown"], r["counts"]["refused"]) == (1, 1)


def test_message_sent_before_the_subscription_is_not_expected():
    h = H()
    m = h.pub("p", 0, "d/p")
    h.connect("s", "node-1", persistent=True).sub("s", "d/#")
    m2 = h.pub("p", 1, "d/p")
    h.deliver("s", m2, "d/p")
    assert m and status(h)["lost"] == "pass"


def test_qos0_delivery_of_qos1_message_is_not_expected():
    h = H()
    h.connect("s", "node-1", persistent=True).sub("s", "d/#", qos=0)
    h.pub("p", 0, "d/p")
    assert status(h)["lost"] == "n/a"


def test_qos2_duplicate():
    h = good()
    h.deliver("s2", "q:1", "d/q", qos=2)
    s = status(h)
    assert s["qos2-dup"] == "fail" and s["order"] == "pass"
    assert run(h)["counts"]["duplicated"] == 1


def test_qos1_duplicate_is_counted_not_a_violation():
    h = good()
    h.deliver("s2", "p:1", "d/p", qos=1)
    assert status(h)["qos2-dup"] == "pass"
    assert run(h)["counts"]["duplicated"] == 1


def test_reordered():
    h = good()
    a = h.pub("p", 4, "d/p")
    b = h.pub("p", 5, "d/p")
    h.deliver("s2", b, "d/p").deliver("s2", a, "d/p")
    h.deliver("s1", a, "d/p", conn=2).deliver("s1", b, "d/p", conn=2)
    s = status(h)
    assert s["order"] == "fail" and s["lost"] == "pass"
    assert run(h)["counts"]["reordered"] == 1


def test_two_connections_one_id_in_consecutive_samples():
    h = good()
    h("clients", node="node-2", round=2, ids=["s2", "x"])
    h("clients", node="node-3", round=2, ids=["x"])
    h("clients", node="node-2", round=3, ids=["s2", "x"])
    h("clients", node="node-3", round=3, ids=["x"])
    assert status(h)["one-conn"] == "fail"


def test_two_connections_in_one_sample_only_is_a_move():
    h = good()
    h("clients", node="node-2", round=2, ids=["s2", "x"])
    h("clients", node="node-3", round=2, ids=["x"])
    h("clients", node="node-3", round=3, ids=["x"])
    assert status(h)["one-conn"] == "pass"


def test_shared_message_to_two_members():
    h = good()
    m = h.pub("sp", 2, "s/x")
    h.deliver("g1", m, "s/x").deliver("g2", m, "s/x", node="node-3")
    assert status(h)["shared-once"] == "fail"


def test_shared_message_to_two_members_that_left_cleanly_later():
    h = good()
    m = h.pub("sp", 2, "s/x")
    h.deliver("g1", m, "s/x").deliver("g2", m, "s/x", node="node-3")
    h("disconnect", client="g1", conn=1, node="node-2", rc=0)
    h("disconnect", client="g2", conn=1, node="node-3", rc=0)
    assert status(h)["shared-once"] == "fail"


def test_unavailability_counts_a_publisher_without_connection():
    h = good()
    h.connect("pd", "node-1")
    h.pub("pd", 0, "d/d", qos=0, ack=False)
    h("disconnect", client="pd", conn=1, node="node-1", rc=7)
    h.t += 3
    h.connect("pd", "node-2", conn=2)
    assert run(h)["counts"]["max_unavailable_s"] == pytest.approx(3.0, abs=0.1)


def test_shared_qos1_redelivered_after_member_dropped_is_fine():
    h = good()
    m = h.pub("sp", 2, "s/x")
    h.deliver("g1", m, "s/x")
    h("disconnect", client="g1", conn=1, node="node-2", rc=7)
    h.deliver("g2", m, "s/x", node="node-3")
    assert status(h)["shared-once"] == "pass"


def test_shared_message_to_no_member():
    h = good()
    h.pub("sp", 2, "s/x")
    assert status(h)["shared-once"] == "fail"


def test_retained_stale_value_on_a_node():
    h = good()
    h("probe", client="pr3", node="node-3", filter="ret/#")
    h.deliver("pr3", "r:0", "ret/a", retain=True)
    s = status(h)
    assert s["retained"] == "fail"
    assert "probe on node-3: ret/a shows r:0, expected r:1" in run(h)["checks"]["retained"]["shown"]


def test_retained_missing_on_a_node():
    h = good()
    h("probe", client="pr3", node="node-3", filter="ret/#")
    assert status(h)["retained"] == "fail"


def test_retained_later_unacknowledged_value_is_accepted():
    h = good()
    r2 = h.pub("r", 2, "ret/a", retain=True, ack=False)
    h("probe", client="pr3", node="node-3", filter="ret/#")
    h.deliver("pr3", r2, "ret/a", retain=True)
    assert status(h)["retained"] == "pass"


def test_will_of_killed_node_client_not_published():
    h = good()
    h.events = [e for e in h.events if not (e["ev"] == "deliver" and e["msg"] == "w:will")]
    assert status(h)["wills"] == "fail"


def test_will_of_drained_node_client_not_published():
    """A drain (SIGTERM, rolling restart) ends the connection from the
    server's side: the will is due (MQTT 5 §3.1.2.5) and the session moved."""
    h = good()
    for e in h.events:
        if e["ev"] == "fault":
            e["kind"], e["detail"] = "drain", "SIGTERM"
    assert status(h)["wills"] == "pass"
    assert status(h)["lost-moved"] == "pass"
    h.events = [e for e in h.events if not (e["ev"] == "deliver" and e["msg"] == "w:will")]
    assert status(h)["wills"] == "fail"


def test_will_of_client_that_left_before_the_kill_is_not_expected():
    h = H()
    h.connect("w", "node-1", will="w:will")
    h("disconnect", client="w", conn=1, node="node-1", rc=0)
    h("fault", kind="kill", target="node-1", detail="SIGKILL")
    assert status(h)["wills"] == "n/a"


def test_ack_for_a_message_never_sent():
    h = good()
    h("ack", client="p", msg="p:99", rc=0)
    assert status(h)["false-ack"] == "fail"


def test_message_both_acked_and_refused():
    h = good()
    h("refused", client="p", msg="p:1", rc=0x97, stage="puback")
    assert status(h)["false-ack"] == "fail"


def test_acked_message_delivered_to_nobody():
    h = good()
    h.pub("p", 4, "d/p")
    s = status(h)
    assert s["false-ack"] == "fail" and s["lost"] == "fail" and s["lost-moved"] == "fail"


def test_verdict_is_strict():
    h = good()
    for i in range(4, 6):
        m = h.pub("p", i, "d/p")
        h.deliver("s2", m, "d/p")
    r = run(h)
    assert verdict(r, {"lost-moved": "[5/9]"}) == ("xfail", [])
    v, problems = verdict(r, {})
    assert v == "FAIL" and problems == ["lost-moved (invariant 1) failed"]
    # An expected failure that passes fails the run: the marker must go.
    v, problems = verdict(run(good()), {"lost-moved": "[5/9]"})
    assert v == "FAIL" and "remove the marker" in problems[0]
    # Any other failure beside an expected one fails it too.
    h.deliver("s2", "q:1", "d/q", qos=2)
    v, problems = verdict(run(h), {"lost-moved": "[5/9]"})
    assert v == "FAIL" and problems == ["qos2-dup (invariant 1) failed"]


def test_verdict_sometimes_may_pass_or_fail():
    h = good()
    for i in range(4, 6):
        m = h.pub("p", i, "d/p")
        h.deliver("s2", m, "d/p")
    sometimes = {"lost-moved": "sometimes: a timing-dependent limit"}
    assert verdict(run(h), sometimes) == ("xfail", [])
    assert verdict(run(good()), sometimes) == ("pass", [])
    # It excuses only its own check.
    h.deliver("s2", "q:1", "d/q", qos=2)
    v, problems = verdict(run(h), sometimes)
    assert v == "FAIL" and problems == ["qos2-dup (invariant 1) failed"]


def test_details_say_whether_a_mark_fired():
    """The report's line for a marked check: a 'sometimes:' mark that did
    not fire read 'pass (expected to fail today: ...)', as if it had."""
    h = good()
    for i in range(4, 6):
        m = h.pub("p", i, "d/p")
        h.deliver("s2", m, "d/p")
    sometimes = {"lost-moved": "sometimes: a timing-dependent limit"}
    fired = [x for x in details("x", run(h), sometimes).splitlines() if x.startswith("- lost-moved")][0]
    assert fired.startswith("- lost-moved (inv 1): fail (expected to fail today: sometimes: a timing-dependent")
    quiet = [x for x in details("x", run(good()), sometimes).splitlines() if x.startswith("- lost-moved")][0]
    assert quiet.startswith("- lost-moved (inv 1): pass (marked, did not fail in this run: sometimes: a timing")
    assert "expected to fail" not in quiet


def test_unavailability_is_the_longest_gap_between_acks():
    h = H()
    h.connect("s", "node-2", persistent=True).sub("s", "d/#")
    for i in range(3):
        h.deliver("s", h.pub("p", i, "d/p"), "d/p")
    h.t += 5
    h.deliver("s", h.pub("p", 3, "d/p"), "d/p")
    assert run(h)["counts"]["max_unavailable_s"] == pytest.approx(5.0, abs=0.1)


def test_helpers():
    assert topic_matches("a/#", "a/b/c") and topic_matches("a/+/c", "a/b/c") and topic_matches("#", "a")
    assert not topic_matches("a/+", "a/b/c") and not topic_matches("#", "$SYS/x") and not topic_matches("a/b", "a")
    assert id_ranges(["p:3", "p:1", "p:2", "q:7", "p:9", "w:will"]) == "p:1-3,9 q:7 w:will"


# ---- the checks of scenarios 2, 5, 8 and 9 -------------------------------

NEW = ("qos2-flow", "msg-expiry", "session-expiry", "membership", "memory")


def test_good_history_leaves_the_new_checks_not_applicable():
    s = status(good())
    assert {n: s[n] for n in NEW} == {n: "n/a" for n in NEW}


def held_qos2(h, rc=0, complete=True):
    m = h.pub("h", 0, "d/h", qos=2)
    h.deliver("s2", m, "d/h", qos=2)
    h.deliver("s1", m, "d/h", qos=2, conn=2, node="node-1")
    h("release", client="h", msg=m, conn=2)
    if complete:
        h("complete", client="h", msg=m, rc=rc)
    return h


def test_qos2_pubrel_answered_passes():
    assert status(held_qos2(good()))["qos2-flow"] == "pass"
    assert status(held_qos2(good(), rc=0x92))["qos2-flow"] == "pass"


def test_qos2_pubrel_never_answered():
    h = held_qos2(good(), complete=False)
    assert status(h)["qos2-flow"] == "fail"
    assert run(h)["checks"]["qos2-flow"]["shown"] == ["h:0: PUBREL sent on connection 2, no PUBCOMP"]


def test_qos2_pubcomp_with_an_error():
    assert status(held_qos2(good(), rc=0x80))["qos2-flow"] == "fail"


def expiry_history(deliver_to_s3=True):
    h = H()
    h.connect("e1", "node-1").sub("e1", "x/#", qos=1)
    h.connect("e3", "node-3").sub("e3", "x/#", qos=1)
    h("send", client="p", msg="p:0", topic="x/p", qos=1, retain=False, seq=0, expiry=600)
    h("ack", client="p", msg="p:0", rc=0)
    h.deliver("e1", "p:0", "x/p", node="node-1")
    if deliver_to_s3:
        h.deliver("e3", "p:0", "x/p", node="node-3")
    return h


def test_message_with_expiry_delivered_everywhere():
    assert status(expiry_history())["msg-expiry"] == "pass"


def test_message_with_expiry_dropped_by_one_node():
    h = expiry_history(deliver_to_s3=False)
    s = status(h)
    assert s["msg-expiry"] == "fail" and s["lost"] == "n/a" and s["false-ack"] == "pass"
    assert run(h)["checks"]["msg-expiry"]["shown"] == ["p:0 (expiry 600s) never reached e3 on node-3"]


def test_message_with_expiry_shorter_than_the_run_is_not_expected():
    h = expiry_history(deliver_to_s3=False)
    h.t += 700
    h("phase", name="end")
    assert status(h)["msg-expiry"] == "n/a"


def test_session_expiry():
    h = H()
    h("session_check", client="x", node="node-2", expect="present", present=True, expiry=8)
    h("session_check", client="x", node="node-1", expect="absent", present=False, expiry=8)
    assert status(h)["session-expiry"] == "pass"
    h("session_check", client="y", node="node-1", expect="absent", present=True, expiry=8)
    assert status(h)["session-expiry"] == "fail"
    h = H()
    h("session_check", client="x", node="node-2", expect="present", present=False, expiry=8)
    assert status(h)["session-expiry"] == "fail"


def members(h, rounds, views, every=1.0):
    """views: node -> member list, sampled `rounds` times `every` s apart."""
    for r in range(1, rounds + 1):
        h.t += every
        for node, ms in views.items():
            h("members", node=node, round=r, members=ms)


def test_membership_complete():
    h = H()
    members(h, 10, {"node-1": ["node-1", "node-2"], "node-2": ["node-1", "node-2"]})
    assert status(h)["membership"] == "pass"


def test_membership_missing_a_live_node():
    h = H()
    members(h, 10, {"node-1": ["node-1", "node-2"], "node-2": ["node-2"]})
    assert status(h)["membership"] == "fail"
    assert run(h)["checks"]["membership"]["shown"][0].startswith("node-1 answers but node-2 has not listed it")


def test_membership_briefly_missing_is_fine():
    h = H()
    members(h, 3, {"node-1": ["node-1", "node-2"], "node-2": ["node-2"]})
    assert status(h)["membership"] == "pass"


def test_membership_may_lag_after_a_fault_and_during_a_partition():
    h = H()
    h("fault", kind="restart", target="node-1", detail="")
    members(h, 10, {"node-1": ["node-1", "node-2"], "node-2": ["node-2"]}, every=2)
    assert status(h)["membership"] == "n/a"
    h = H()
    h("fault", kind="partition", target="node-1", detail="")
    h.t += MEMBER_GRACE
    members(h, 10, {"node-1": ["node-1", "node-2"], "node-2": ["node-2"]}, every=2)
    assert status(h)["membership"] == "n/a"
    h("fault", kind="heal", target="node-1", detail="")
    h.t += MEMBER_GRACE
    members(h, 10, {"node-1": ["node-1", "node-2"], "node-2": ["node-2"]}, every=2)
    assert status(h)["membership"] == "fail"


def test_memory_bounded_and_unbounded():
    h = H()
    for kb in (50000, 60000, 52000):
        h("rss", node="node-1", pid=7, kb=kb, limit_kb=20000)
    assert status(h)["memory"] == "pass"
    h("rss", node="node-1", pid=7, kb=90000, limit_kb=20000)
    assert status(h)["memory"] == "fail"
    assert run(h)["checks"]["memory"]["shown"] == ["node-1 (pid 7) grew by 40000 KiB (bound 20000 KiB): "
                                                   "50000 -> 90000 KiB"]
    # A restarted node is a new process: its own first sample.
    h = H()
    h("rss", node="node-1", pid=7, kb=50000, limit_kb=20000)
    h("rss", node="node-1", pid=8, kb=90000, limit_kb=20000)
    assert status(h)["memory"] == "pass"


def test_message_with_expiry_checked_when_subscribers_leave_at_the_end():
    """Every actor disconnects once the run is drained: that is no drop (the
    scenario's msg-expiry was always n/a before)."""
    h = expiry_history(deliver_to_s3=False)
    h("phase", name="drained")
    h("disconnect", client="e1", conn=1, node="node-1", rc=0)
    h("disconnect", client="e3", conn=1, node="node-3", rc=0)
    assert status(h)["msg-expiry"] == "fail"
    h = H()
    h.connect("e1", "node-1").sub("e1", "x/#", qos=1)
    h("send", client="p", msg="p:0", topic="x/p", qos=1, retain=False, seq=0, expiry=600)
    h("ack", client="p", msg="p:0", rc=0)
    h("disconnect", client="e1", conn=1, node="node-1", rc=7)  # dropped during the run: not checked
    h("phase", name="drained")
    assert status(h)["msg-expiry"] == "n/a"


def test_shared_message_handed_to_another_member_is_not_reordered():
    """g1 had s:1 and lost its connection; s:1 goes to g2 after s:2 (MQTT 5
    §4.8.2). The same order without the drop is a violation."""
    for drop, want in ((True, "pass"), (False, "fail")):
        h = H()
        h.connect("g1", "node-2").sub("g1", "$share/g/s/#", qos=1)
        h.connect("g2", "node-3").sub("g2", "$share/g/s/#", qos=1)
        m1, m2 = h.pub("sp", 1, "s/x"), h.pub("sp", 2, "s/x")
        h.deliver("g1", m1, "s/x")
        h.deliver("g2", m2, "s/x", node="node-3")
        if drop:
            h("disconnect", client="g1", conn=1, node="node-2", rc=0x8B)
        h.deliver("g2", m1, "s/x", node="node-3")
        assert status(h)["order"] == want, drop
