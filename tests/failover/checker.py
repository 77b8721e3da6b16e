# SPDX-License-Identifier: Apache-2.0
"""The failover checker: a pure function over a recorded history (the events
workload.py writes, one dict each) that verifies the invariants of
../shared/DESIGN.md and counts what happened.

Checks (name: invariant, what fails it):

  lost        1  an acknowledged QoS 1/2 message (effective QoS >= 1) sent
                 after a persistent subscriber's SUBACK never reached it; the
                 subscriber stayed on one node that was never killed
  lost-moved  1  the same for a persistent subscriber whose session had to
                 move: its node was killed, or it reconnected to another node
  qos2-dup    1  a QoS 2 message delivered more than once to one subscriber
  order       2  per subscriber, per publisher and topic, a message delivered
                 after a later one of the same publisher (MQTT 4.6); not a
                 shared message sent again to another member after the first
                 member's connection ended (MQTT 5 4.8.2)
  one-conn    3  one client id connected on two nodes in two consecutive
                 admin API samples (one sample may be skewed by a move)
  shared-once 4  a shared-subscription message delivered to two members (QoS 1:
                 unless the first member's connection dropped before it could
                 ack), or an acknowledged one to none while a member stayed up
  retained    5  a retained probe on a node did not get the last acknowledged
                 retained value of a topic (or a later unacknowledged one)
  wills       6  a client connected with a will to a node that was killed
                 or drained: its will never reached a subscriber
  progress    7  a publisher did not get through its messages within the
                 scenario's time bound (others must be unaffected by a slow or
                 stuck subscriber, and service must come back after a fault)
  false-ack   -  an ack for a message never sent, a message both acknowledged
                 and refused, or an acknowledged message that reached nobody
                 although a subscriber that never moved was subscribed
  qos2-flow   1  a QoS 2 publisher that held PUBREL across a fault and sent it
                 on its new connection got no PUBCOMP, or one with an error
                 other than 0x92 (packet identifier not found, MQTT 5 §4.3.3)
  msg-expiry  1  an acknowledged message with a message expiry interval longer
                 than the run never reached a subscriber that stayed connected
                 (a node whose clock is off must not expire it early)
  session-expiry - a session gone before its expiry interval, or still there
                 well after it (MQTT 5 §3.1.2.11.2; expiry is Redis's clock)
  membership  -  a node that answers its admin API missing from another
                 node's member list for 5 s or more, outside the 30 s after a
                 fault and outside a partition
  memory      7  a node's resident memory grew by more than the scenario's
                 bound over its first sample (same process)

A check is "pass", "fail" or "n/a" (nothing in the history exercises it).
"""
import collections

CHECKS = [("lost", "1"), ("lost-moved", "1"), ("qos2-dup", "1"), ("order", "2"), ("one-conn", "3"),
          ("shared-once", "4"), ("retained", "5"), ("wills", "6"), ("progress", "7"), ("false-ack", "-"),
          ("qos2-flow", "1"), ("msg-expiry", "1"), ("session-expiry", "-"), ("membership", "-"), ("memory", "7")]
MEMBER_GRACE = 30.0  # s after any fault in which a member list may lag
MEMBER_MISSING = 5.0  # s a live node may be missing from another's list
MAX_SHOWN = 20  # violations listed per check (the count is always complete)


def topic_matches(filt, topic):
    """MQTT filter matching (no $share prefix here)."""
    f, t = filt.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("#", "+"):
        return False
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


def split_share(filt):
    """("group", "filter") for $share/group/filter, else (None, filt)."""
    if filt.startswith("$share/"):
        _, group, rest = filt.split("/", 2)
        return group, rest
    return None, filt


def msg_parts(msg):
    """("publisher", seq or None) from "publisher:seq"."""
    pub, _, seq = msg.rpartition(":")
    return pub, int(seq) if seq.isdigit() else None


def id_ranges(ids):
    """["p:1", "p:2", "p:3", "q:7"] -> "p:1-3 q:7"."""
    by_pub = collections.defaultdict(list)
    other = []
    for m in ids:
        pub, seq = msg_parts(m)
        if seq is None:
            other.append(m)
        else:
            by_pub[pub].append(seq)
    out = []
    for pub in sorted(by_pub):
        seqs = sorted(set(by_pub[pub]))
        runs, start, prev = [], seqs[0], seqs[0]
        for s in seqs[1:] + [None]:
            if s is not None and s == prev + 1:
                prev = s
                continue
            runs.append(str(start) if start == prev else "%d-%d" % (start, prev))
            if s is not None:
                start = prev = s
        out.append("%s:%s" % (pub, ",".join(runs)))
    return " ".join(out + sorted(other))


class _Check:
    def __init__(self, name, inv):
        self.name, self.inv = name, inv
        self.checked = 0
        self.violations = []

    def fail(self, text):
        self.violations.append(text)

    def result(self):
        status = "fail" if self.violations else ("pass" if self.checked else "n/a")
        return {"invariant": self.inv, "status": status, "checked": self.checked,
                "violations": len(self.violations), "shown": self.violations[:MAX_SHOWN]}


def check(events):
    """Check one scenario's history. Returns {"counts", "checks", "lost_ids"}."""
    ev = sorted(events, key=lambda e: e["t"])
    by = collections.defaultdict(list)
    for e in ev:
        by[e["ev"]].append(e)
    end_t = ev[-1]["t"] if ev else 0
    checks = {name: _Check(name, inv) for name, inv in CHECKS}

    # ---- publishes --------------------------------------------------------
    sends = {}
    for e in by["send"]:
        sends[e["msg"]] = e
    acks, refused = {}, {}
    for e in by["ack"]:
        acks.setdefault(e["msg"], e)
    for e in by["refused"]:
        refused.setdefault(e["msg"], e)
    fa = checks["false-ack"]
    for m, e in list(acks.items()) + list(refused.items()):
        s = sends.get(m)
        fa.checked += 1
        if s is None or s["client"] != e["client"] or s["t"] > e["t"]:
            fa.fail("%s: %s for a message that client never sent before" % (m, e["ev"]))
    for m in set(acks) & set(refused):
        fa.fail("%s: both acknowledged (rc %d) and refused (rc %d)" % (m, acks[m]["rc"], refused[m]["rc"]))
    acked = {m: sends[m] for m in acks if m in sends and m not in refused and sends[m]["qos"] > 0}
    unknown = [m for m, s in sends.items() if s["qos"] > 0 and m not in acks and m not in refused]

    # ---- clients: connections, subscriptions, deliveries -------------------
    conns = collections.defaultdict(dict)  # client -> conn -> {node, t0, t1, persistent, will}
    for e in by["connect"]:
        conns[e["client"]][e["conn"]] = {"node": e.get("node"), "t0": e["t"], "t1": None,
                                         "persistent": e.get("persistent", False), "will": e.get("will"),
                                         "stuck": e.get("stuck", False)}
    for e in by["disconnect"]:
        c = conns[e["client"]].get(e["conn"])
        if c is not None and c["t1"] is None:
            c["t1"] = e["t"]
    # A drain (SIGTERM) ends its node's connections with the server's DISCONNECT
    # (0x8B) or a close: wills are published (MQTT 5 §3.1.2.5) and sessions move.
    kills = [e for e in by["fault"] if e.get("kind") in ("kill", "drain")]

    subs = collections.defaultdict(dict)  # client -> filter -> (t, granted)
    for e in by["suback"]:
        if e["granted"] < 0x80:
            subs[e["client"]].setdefault(e["filter"], (e["t"], e["granted"]))
    probes = by["probe"]
    probe_ids = {p["client"] for p in probes}
    deliveries = collections.defaultdict(list)
    for e in by["deliver"]:
        deliveries[e["client"]].append(e)

    def persistent(client):
        return any(c["persistent"] for c in conns[client].values())

    def moved(client):
        cs = conns[client].values()
        nodes = {c["node"] for c in cs if c["node"] is not None}
        if len(nodes) > 1:
            return True
        for k in kills:
            if any(c["node"] == k["target"] and c["t0"] < k["t"] for c in cs):
                return True
        return False

    def never_dropped(client):
        cs = list(conns[client].values())
        return len(cs) == 1 and cs[0]["t1"] is None

    # A shared message sent again to another member after the member that had
    # it lost its connection (MQTT 5 §4.8.2) comes out of its order there.
    def groups(client, topic):
        return {g for g, f in map(split_share, subs[client]) if g is not None and topic_matches(f, topic)}

    handed = set()  # (client, msg)
    by_msg = collections.defaultdict(list)
    for d in by["deliver"]:
        if not d.get("retain") and groups(d["client"], d["topic"]):
            by_msg[d["msg"]].append(d)
    for m, ds in by_msg.items():
        for i, d in enumerate(ds):
            for e in ds[:i]:
                c = conns[e["client"]].get(e["conn"])
                if (e["client"] != d["client"] and c and c["t1"] is not None and c["t1"] <= d["t"]
                        and groups(d["client"], d["topic"]) & groups(e["client"], e["topic"])):
                    handed.add((d["client"], m))

    # ---- invariant 1: lost, lost-moved, qos2-dup; invariant 2: order ------
    lost_ids = {}
    duplicated = reordered = 0
    witnesses = []  # (client, filter, t, granted): subscribers that never moved
    for client, fs in sorted(subs.items()):
        if client in probe_ids:
            continue
        got = collections.Counter()
        got_qos = {}
        for d in deliveries[client]:
            if d.get("retain"):
                continue
            got[d["msg"]] += 1
            got_qos[d["msg"]] = max(got_qos.get(d["msg"], 0), d["qos"])
        stable = not moved(client)
        for filt, (t_sub, granted) in fs.items():
            group, plain = split_share(filt)
            if group is not None:
                continue
            if stable and (persistent(client) or never_dropped(client)):
                witnesses.append((client, plain, t_sub, granted))
            if not persistent(client):
                continue
            chk = checks["lost" if stable else "lost-moved"]
            missing = []
            for m, s in acked.items():
                if s["retain"] or s.get("expiry") or s["t"] < t_sub or min(s["qos"], granted) < 1:
                    continue
                if not topic_matches(plain, s["topic"]):
                    continue
                chk.checked += 1
                if got[m] == 0:
                    missing.append(m)
            if missing:
                lost_ids.setdefault(client, []).extend(missing)
                chk.fail("%s (%s, %s): %d acknowledged message(s) never arrived: %s" % (
                    client, filt, "moved" if not stable else "stayed", len(missing), id_ranges(missing)))
        dups = [m for m, n in got.items() if n > 1]
        duplicated += sum(got[m] - 1 for m in dups)
        qd = checks["qos2-dup"]
        qd.checked += sum(1 for m, q in got_qos.items() if q == 2)
        bad = [m for m in dups if got_qos[m] == 2]
        if bad:
            qd.fail("%s: %d QoS 2 message(s) delivered more than once: %s" % (client, len(bad), id_ranges(bad)))
        # order: a new message older than one already seen from its publisher on its topic
        high, seen = {}, set()
        oc = checks["order"]
        for d in deliveries[client]:
            if d.get("retain") or d["msg"] in seen or (client, d["msg"]) in handed:
                continue
            seen.add(d["msg"])
            pub, seq = msg_parts(d["msg"])
            if seq is None:
                continue
            key = (pub, d["topic"])
            oc.checked += 1
            if key in high and seq < high[key]:
                reordered += 1
                oc.fail("%s: %s arrived after %s:%d on %s" % (client, d["msg"], pub, high[key], d["topic"]))
            high[key] = max(high.get(key, -1), seq)

    # ---- invariant 4: shared subscriptions --------------------------------
    groups = collections.defaultdict(list)  # (group, filter) -> [(client, t_sub, granted)]
    for client, fs in subs.items():
        for filt, (t_sub, granted) in fs.items():
            group, plain = split_share(filt)
            if group is not None:
                groups[(group, plain)].append((client, t_sub, granted))
    so = checks["shared-once"]
    for (group, plain), members in sorted(groups.items()):
        names = {m[0] for m in members}
        who = collections.defaultdict(list)  # msg -> [(t, client, conn, qos)]
        for client in names:
            for d in deliveries[client]:
                if not d.get("retain") and topic_matches(plain, d["topic"]):
                    who[d["msg"]].append((d["t"], client, d["conn"], d["qos"]))
        doubled = []
        for m, ds in who.items():
            so.checked += 1
            ds.sort()
            clients = {x[1] for x in ds}
            if len(clients) < 2:
                continue
            first_t, first_c, first_conn, q = ds[0]
            # A QoS 1 redelivery is fine only once the first member's
            # connection had dropped (it may not have acked).
            t1 = conns[first_c].get(first_conn, {}).get("t1")
            later = min(x[0] for x in ds if x[1] != first_c)
            dropped = t1 is not None and t1 <= later
            if max(x[3] for x in ds) == 2 or not dropped:
                doubled.append(m)
        if doubled:
            so.fail("$share/%s/%s: %d message(s) delivered to more than one member: %s" % (
                group, plain, len(doubled), id_ranges(doubled)))
        steady = [m for m in members if never_dropped(m[0])]
        if steady:
            t_first = min(m[1] for m in steady)
            none = [m for m, s in acked.items() if not s["retain"] and s["t"] >= t_first
                    and topic_matches(plain, s["topic"]) and m not in who]
            so.checked += len(none)
            if none:
                so.fail("$share/%s/%s: %d acknowledged message(s) reached no member although %s stayed "
                        "connected: %s" % (group, plain, len(none), steady[0][0], id_ranges(none)))

    # ---- invariant 5: retained --------------------------------------------
    rt = checks["retained"]
    retained_by_topic = collections.defaultdict(list)
    for m, s in sends.items():
        if s["retain"]:
            retained_by_topic[s["topic"]].append(s)
    for p in probes:
        seen = collections.defaultdict(set)
        for d in deliveries[p["client"]]:
            if d.get("retain"):
                seen[d["topic"]].add(d["msg"])
        for topic, ss in sorted(retained_by_topic.items()):
            if not topic_matches(p["filter"], topic):
                continue
            done = [s for s in ss if s["msg"] in acked and acks[s["msg"]]["t"] < p["t"]]
            if not done:
                continue
            last = max(done, key=lambda s: s["seq"])
            ok = {last["msg"]} | {s["msg"] for s in ss if s["seq"] > last["seq"] and s["t"] < p["t"]
                                  and s["msg"] not in refused}
            rt.checked += 1
            if not (seen[topic] & ok):
                rt.fail("probe on %s: %s shows %s, expected %s" % (
                    p.get("node"), topic, ",".join(sorted(seen[topic])) or "nothing", last["msg"]))

    # ---- invariant 6: wills of a killed node's clients ---------------------
    wl = checks["wills"]
    delivered_anywhere = collections.Counter(d["msg"] for d in by["deliver"])
    for k in kills:
        for client, cs in sorted(conns.items()):
            for c in cs.values():
                if c["will"] and c["node"] == k["target"] and c["t0"] < k["t"] and (c["t1"] is None or
                                                                                    c["t1"] >= k["t"]):
                    wl.checked += 1
                    if not delivered_anywhere[c["will"]]:
                        wl.fail("%s on %s (killed): will %s never published" % (client, k["target"], c["will"]))

    # ---- invariant 3: one live connection per client id --------------------
    oc3 = checks["one-conn"]
    rounds = collections.defaultdict(lambda: collections.defaultdict(set))  # round -> id -> nodes
    round_t = {}
    for e in by["clients"]:
        for cid in e["ids"]:
            rounds[e["round"]][cid].add(e["node"])
        round_t.setdefault(e["round"], e["t"])
    multi = collections.defaultdict(list)  # id -> [round]
    for r, ids in rounds.items():
        for cid, nodes in ids.items():
            oc3.checked += 1
            if len(nodes) > 1:
                multi[cid].append(r)
    for cid, rs in sorted(multi.items()):
        rs.sort()
        if any(b == a + 1 for a, b in zip(rs, rs[1:])):
            nodes = sorted(set().union(*(rounds[r][cid] for r in rs)))
            oc3.fail("%s: connected on %s at once in %d samples over %.1fs" % (
                cid, "+".join(nodes), len(rs), round_t[rs[-1]] - round_t[rs[0]]))

    # ---- others unaffected: every publisher got through -------------------
    pg = checks["progress"]
    for e in by["pub_end"]:
        pg.checked += 1
        if e["reason"] != "done":
            mine = [acks[m]["t"] for m in acks if acks[m]["client"] == e["client"]]
            pg.fail("%s sent %d of %d (%s); its last ack %s" % (
                e["client"], e["sent"], e["count"], e["reason"],
                "%.1fs before it ended" % (e["t"] - max(mine)) if mine else "never came"))

    # ---- false ack: acknowledged yet delivered to nobody -------------------
    for m, s in acked.items():
        if s["retain"]:
            continue
        ws = [w for w in witnesses if w[2] <= s["t"] and min(w[3], s["qos"]) >= 1 and topic_matches(w[1], s["topic"])]
        if not ws:
            continue
        fa.checked += 1
        if not delivered_anywhere[m]:
            fa.fail("%s acknowledged, delivered to nobody (e.g. not to %s, subscribed since before it)" % (
                m, ws[0][0]))

    # ---- QoS 2 held across a fault: PUBREL answered ------------------------
    qf = checks["qos2-flow"]
    completes = {}
    for e in by["complete"]:
        completes.setdefault(e["msg"], e)
    for e in by["release"]:
        qf.checked += 1
        c = completes.get(e["msg"])
        if c is None or c["t"] < e["t"]:
            qf.fail("%s: PUBREL sent on connection %d, no PUBCOMP" % (e["msg"], e["conn"]))
        elif c["rc"] >= 0x80 and c["rc"] != 0x92:
            qf.fail("%s: PUBCOMP reason 0x%02x" % (e["msg"], c["rc"]))

    # ---- message expiry across nodes ---------------------------------------
    me = checks["msg-expiry"]
    got_any = {c: {d["msg"] for d in ds} for c, ds in deliveries.items()}
    span = (end_t - ev[0]["t"]) if ev else 0
    # Stayed connected: one connection, closed (if at all) only once the run
    # was drained (every actor disconnects at the end).
    drained_t = next((e["t"] for e in by["phase"] if e.get("name") == "drained"), end_t)

    def stayed(client):
        cs = list(conns[client].values())
        return len(cs) == 1 and (cs[0]["t1"] is None or cs[0]["t1"] >= drained_t)
    for m, s in sorted(acked.items()):
        if not s.get("expiry") or s["expiry"] <= span:
            continue
        for client, fs in sorted(subs.items()):
            if client in probe_ids or not stayed(client):
                continue
            for filt, (t_sub, granted) in fs.items():
                group, plain = split_share(filt)
                if group is not None or t_sub > s["t"] or min(granted, s["qos"]) < 1:
                    continue
                if not topic_matches(plain, s["topic"]):
                    continue
                me.checked += 1
                if m not in got_any.get(client, ()):
                    node = conns[client][1]["node"] if 1 in conns[client] else None
                    me.fail("%s (expiry %ds) never reached %s on %s" % (m, s["expiry"], client, node))

    # ---- session expiry -----------------------------------------------------
    se = checks["session-expiry"]
    for e in by["session_check"]:
        se.checked += 1
        if e["present"] != (e["expect"] == "present"):
            se.fail("%s on %s: session %s, expected %s (expiry %ss)" % (
                e["client"], e.get("node"), "present" if e["present"] else "absent", e["expect"], e.get("expiry")))

    # ---- membership ---------------------------------------------------------
    ms = checks["membership"]
    fault_ts = [e["t"] for e in by["fault"]]
    cut = []  # (start, end) of partitions
    for e in by["fault"]:
        if e.get("kind") == "partition":
            cut.append([e["t"], end_t])
        elif e.get("kind") == "heal" and cut:
            cut[-1][1] = e["t"]
    answered = collections.defaultdict(set)  # round -> nodes that answered
    views = collections.defaultdict(dict)  # round -> node -> (t, members)
    for e in by["clients"]:
        answered[e["round"]].add(e["node"])
    for e in by["members"]:
        answered[e["round"]].add(e["node"])
        views[e["round"]][e["node"]] = (e["t"], set(e["members"]))
    missing_since = {}  # (viewer, node) -> t first seen missing
    reported = set()
    for r in sorted(views):
        for viewer, (t, members) in sorted(views[r].items()):
            quiet = not any(t - MEMBER_GRACE <= ft <= t for ft in fault_ts) and not any(a <= t <= b for a, b in cut)
            for n in sorted(answered[r]):
                key = (viewer, n)
                if not quiet or n in members:
                    missing_since.pop(key, None)
                    if quiet:
                        ms.checked += 1
                    continue
                ms.checked += 1
                t0 = missing_since.setdefault(key, t)
                if t - t0 >= MEMBER_MISSING and key not in reported:
                    reported.add(key)
                    ms.fail("%s answers but %s has not listed it for %.1fs (lists %s)" % (
                        n, viewer, t - t0, ",".join(sorted(members)) or "nobody"))

    # ---- memory -------------------------------------------------------------
    mm = checks["memory"]
    first = {}
    worst = {}
    for e in by["rss"]:
        key = (e["node"], e["pid"])
        first.setdefault(key, e)
        mm.checked += 1
        growth = e["kb"] - first[key]["kb"]
        if growth > e["limit_kb"] and growth > worst.get(key, (0,))[0]:
            worst[key] = (growth, e)
    for (node, pid), (growth, e) in sorted(worst.items()):
        mm.fail("%s (pid %d) grew by %d KiB (bound %d KiB): %d -> %d KiB" % (
            node, pid, growth, e["limit_kb"], first[(node, pid)]["kb"], e["kb"]))

    # ---- counts -------------------------------------------------------------
    # Max unavailability: the longest a publisher waited, between acks
    # (QoS 1/2) or from losing its connection to having one again (any QoS).
    unavailable = 0.0
    for client, cs in conns.items():
        if not any(s["client"] == client for s in sends.values()):
            continue
        spans = sorted((c["t0"], c["t1"]) for c in cs.values())
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            if a1 is not None:
                unavailable = max(unavailable, b0 - a1)
    per_pub = collections.defaultdict(list)
    for m in acked:
        per_pub[acked[m]["client"]].append(acks[m]["t"])
    for pub, ts in per_pub.items():
        first_send = min(s["t"] for s in sends.values() if s["client"] == pub)
        last_send = max(s["t"] for s in sends.values() if s["client"] == pub)
        ts = sorted([first_send] + ts)
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        if last_send > ts[-1]:
            gaps.append(last_send - ts[-1])
        unavailable = max([unavailable] + gaps)
    all_lost = set()
    for ids in lost_ids.values():
        all_lost.update(ids)
    counts = {
        "sent": len(sends),
        "acked": len(acked),
        "delivered": len(by["deliver"]),
        "lost": len(all_lost),
        "duplicated": duplicated,
        "reordered": reordered,
        "refused": len(refused),
        "unknown": len(unknown),
        "max_unavailable_s": round(unavailable, 1),
    }
    return {"counts": counts, "checks": {n: c.result() for n, c in checks.items()},
            "lost_ids": {c: id_ranges(ids) for c, ids in lost_ids.items()},
            "lost_count": {c: len(ids) for c, ids in lost_ids.items()}, "end_t": end_t}


# A reason that starts with this marks a failure known to depend on timing
# (a product limit that shows in some runs only): it may pass without the
# run failing. Every other expected failure is strict.
SOMETIMES = "sometimes: "


def verdict(result, expected):
    """expected: {check name: reason} of failures known today (strict,
    unless the reason starts with SOMETIMES). Returns (verdict, [problems]):
    "pass", "xfail" (only expected failures) or "FAIL" (an unexpected
    failure, or a strict expected one that passed)."""
    problems = []
    xfailed = False
    for name, c in result["checks"].items():
        if name in expected:
            if c["status"] == "fail":
                xfailed = True
            elif not expected[name].startswith(SOMETIMES):
                problems.append("%s was expected to fail (%s) but is %s: remove the marker" % (
                    name, expected[name], c["status"]))
        elif c["status"] == "fail":
            problems.append("%s (invariant %s) failed" % (name, c["invariant"]))
    for name in expected:
        if name not in result["checks"]:
            problems.append("expected failure names an unknown check %r" % name)
    if problems:
        return "FAIL", problems
    return ("xfail" if xfailed else "pass"), []


COLUMNS = [("scenario", 22), ("sent", 6), ("acked", 6), ("delivered", 9), ("lost", 5), ("duplicated", 10),
           ("reordered", 9), ("refused", 7), ("unknown", 7), ("max unavail (s)", 15), ("verdict", 7)]


def table(rows):
    """rows: [(scenario name, result, verdict)] -> a Markdown table."""
    head = "| " + " | ".join(n.ljust(w) for n, w in COLUMNS) + " |"
    sep = "|" + "|".join("-" * (w + 2) for _, w in COLUMNS) + "|"
    out = [head, sep]
    for name, r, v in rows:
        c = r["counts"]
        vals = [name, c["sent"], c["acked"], c["delivered"], c["lost"], c["duplicated"], c["reordered"],
                c["refused"], c["unknown"], c["max_unavailable_s"], v]
        out.append("| " + " | ".join(str(x).ljust(w) for x, (_, w) in zip(vals, COLUMNS)) + " |")
    return "\n".join(out)


def details(name, result, expected):
    """The per-check lines under the table for one scenario."""
    out = ["### %s" % name, ""]
    for cname, c in result["checks"].items():
        mark = c["status"]
        if cname in expected:
            # A 'sometimes:' mark that did not fire says so (the verdict is pass).
            what = "expected to fail today" if c["status"] == "fail" else "marked, did not fail in this run"
            mark += " (%s: %s)" % (what, expected[cname])
        out.append("- %s (inv %s): %s, %d checked, %d violation(s)" % (cname, c["invariant"], mark, c["checked"],
                                                                     c["violations"]))
        for v in c["shown"]:
            out.append("    - " + v)
        if c["violations"] > len(c["shown"]):
            out.append("    - ... %d more" % (c["violations"] - len(c["shown"])))
    for client, n in sorted(result["lost_count"].items()):
        out.append("- lost for %s: %d message(s): %s" % (client, n, result["lost_ids"][client]))
    return "\n".join(out)
