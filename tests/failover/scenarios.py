# SPDX-License-Identifier: Apache-2.0
"""Scenarios: one workload (workload.py) with a fault schedule, checked by
checker.py. Each scenario is bounded in time; its random choices come from
its seed.

EXPECTED lists, per scenario, the checks that fail on today's cluster only
because [5/9] (issue 17, stateless nodes) is not built. The run is strict:
such a check that passes fails the run (remove its line when [5/9] lands),
and any other failing check fails it too.
"""
import random
import signal
import sys
import threading
import time
import traceback

from workload import Holder, Publisher, StuckSubscriber, Subscriber, WillClient, retained_probe

S59 = "[5/9] issue 17"
COMMON_TODAY = {
    # Each node delivers a $share message to its own members: one per node.
    "shared-once": S59 + ": shared subscriptions cluster-wide (invariant 4)",
}
KILL_TODAY = {
    **COMMON_TODAY,
    # A persistent session lives in its node's memory and dies with it.
    "lost-moved": S59 + ": persistent sessions survive their node (invariant 1)",
    # Nobody publishes the wills of a dead node's clients.
    "wills": S59 + ": a dead node's wills published by a survivor (invariant 6)",
}

class Size:
    """How much load: short (CI) or long."""

    def __init__(self, long):
        self.long = long
        self.count = 2000 if long else 240       # messages per data publisher
        self.rate = 100.0 if long else 40.0      # per publisher per second
        self.retained = 30 if long else 9
        self.outage = 10.0                       # seconds of SIGSTOP (the 10 s)
        self.budget = 240 if long else 45        # hard bound of a scenario's workload (s)


class Context:
    """What a scenario's fault schedule can use."""

    def __init__(self, rec, target, cluster, size, rng, log):
        self.rec, self.target, self.cluster, self.size, self.rng, self.log = rec, target, cluster, size, rng, log
        self.actors = {}
        self.main = None  # the publisher whose progress triggers faults
        self.errors = []

    def wait_progress(self, fraction, timeout):
        """Until the main publisher has sent `fraction` of its messages."""
        end = time.time() + timeout
        while self.main.sent < fraction * self.main.count and not self.main.done.is_set() and time.time() < end:
            time.sleep(0.02)

    def fault(self, kind, target, detail=""):
        self.log("  fault: %s %s %s" % (kind, target, detail))
        self.rec("fault", kind=kind, target=target, detail=detail)

    def node(self, name):
        return next(n for n in self.cluster.nodes if n.name == name)


def build_workload(ctx, prefix, extra=()):
    """The standard mix. With nodes known: victims on node 1, survivors on
    nodes 2 and 3; against a --target everything goes through it."""
    rec, target, size = ctx.rec, ctx.target, ctx.size
    names = [n.name for n in target.nodes]
    v, a, b = (names + ["lb", "lb", "lb"])[:3] if len(names) >= 3 else ("lb", "lb", "lb")
    deadline = time.time() + size.budget
    p = prefix
    kw = {"deadline": deadline}
    data = [("%s/data/#" % p, 2)]
    actors = [
        # Persistent subscribers: two on the node the kill scenarios kill.
        Subscriber(rec, target, p + "-sv5", 5, via=v, reconnect="lb", filters=data, **kw),
        Subscriber(rec, target, p + "-sv3", 4, via=v, reconnect="end", filters=data, **kw),
        Subscriber(rec, target, p + "-ss5", 5, via=a, reconnect="lb", filters=data, **kw),
        Subscriber(rec, target, p + "-ss3", 4, via=b, reconnect="lb", filters=data, **kw),
        # A shared group with a member on each of two nodes.
        Subscriber(rec, target, p + "-g1", 5, via=a, persistent=False, filters=[("$share/g/%s/shared/#" % p, 1)],
                   **kw),
        Subscriber(rec, target, p + "-g2", 5, via=b, persistent=False, filters=[("$share/g/%s/shared/#" % p, 1)],
                   **kw),
        # Wills: two clients on node 1, one on node 2; a watcher on node 3.
        Subscriber(rec, target, p + "-wwatch", 5, via=b, persistent=False, filters=[("%s/will/#" % p, 1)], **kw),
        WillClient(rec, target, p + "-w5", 5, via=v, will_topic="%s/will/w5" % p, **kw),
        WillClient(rec, target, p + "-w3", 4, via=v, will_topic="%s/will/w3" % p, **kw),
        WillClient(rec, target, p + "-wc", 5, via=a, will_topic="%s/will/wc" % p, **kw),
        # One client id held on two nodes at once (invariant 3).
        Holder(rec, target, p + "-dup", 5, via=a, reconnect="never", **kw),
        Holder(rec, target, p + "-dup", 4, via=b, reconnect="never", **kw),
        *extra,
    ]
    pubs = [
        Publisher(rec, target, p + "-pa", 5, via=b, topics=["%s/data/a" % p], qos=1, count=size.count,
                  rate=size.rate, **kw),
        Publisher(rec, target, p + "-pb", 4, via=a, topics=["%s/data/b" % p], qos=2, count=size.count,
                  rate=size.rate, **kw),
        Publisher(rec, target, p + "-pc", 5, via="lb", topics=["%s/data/c" % p], qos=2, count=size.count,
                  rate=size.rate, **kw),
        Publisher(rec, target, p + "-pd", 4, via="lb", topics=["%s/data/d" % p], qos=0, count=size.count,
                  rate=size.rate, **kw),
        Publisher(rec, target, p + "-ps", 5, via="lb", topics=["%s/shared/x" % p], qos=1, count=size.count // 4,
                  rate=size.rate / 4, **kw),
        Publisher(rec, target, p + "-pr", 5, via="lb", topics=["%s/ret/%d" % (p, i) for i in range(3)], qos=1,
                  retain=True, count=size.retained, rate=size.retained / (size.count / size.rate), **kw),
    ]
    ctx.main = pubs[0]
    return actors, pubs


# ---- fault schedules ------------------------------------------------------

def faults_kill_node(ctx):
    """SIGKILL node 1 a third of the way through (with a seeded jitter), and
    start it again on its ports 4 s later."""
    n = ctx.node(ctx.target.nodes[0].name)
    ctx.wait_progress(1 / 3 + ctx.rng.uniform(0, 0.05), ctx.size.budget)
    ctx.fault("kill", n.name, "SIGKILL")
    ctx.cluster.kill_node(n)
    time.sleep(4)
    ctx.fault("restart", n.name)
    ctx.cluster.start_node(n)


def faults_redis(ctx):
    """Redis stopped and started again (empty: no persistence), then a 10 s
    outage with SIGSTOP/SIGCONT."""
    c = ctx.cluster
    ctx.wait_progress(0.2, ctx.size.budget)
    ctx.fault("redis-stop", "redis", "deploy/redis/stop")
    c.stop_redis()
    time.sleep(2)
    c.start_redis()
    ctx.fault("redis-start", "redis", "deploy/redis/start, same port, empty")
    ctx.wait_progress(0.5, ctx.size.budget)
    ctx.fault("redis-sigstop", "redis", "SIGSTOP for %gs" % ctx.size.outage)
    c.redis_signal(signal.SIGSTOP)
    time.sleep(ctx.size.outage)
    c.redis_signal(signal.SIGCONT)
    ctx.fault("redis-sigcont", "redis")


def faults_none(ctx):
    pass


def extra_slow(ctx, prefix):
    """A subscriber that takes 20 ms per message, one that never reads."""
    names = [n.name for n in ctx.target.nodes] or ["lb", "lb", "lb"]
    deadline = time.time() + ctx.size.budget
    return [
        Subscriber(ctx.rec, ctx.target, prefix + "-slow", 5, via=names[1 % len(names)], persistent=False,
                   filters=[("%s/data/#" % prefix, 1)], slow=0.02, deadline=deadline),
        StuckSubscriber(ctx.rec, ctx.target, prefix + "-stuck", 4, via=names[2 % len(names)],
                        filter="%s/data/#" % prefix, deadline=deadline),
    ]


class Scenario:
    def __init__(self, name, number, title, faults, expected, extra=None, local_only=True):
        self.name, self.number, self.title = name, number, title
        self.faults, self.expected, self.extra = faults, expected, extra
        self.local_only = local_only


SCENARIOS = [
    Scenario("kill-node", 1, "SIGKILL of node 1 under QoS 1/2 load, clients reconnect through HAProxy",
             faults_kill_node, KILL_TODAY),
    Scenario("redis", 3, "Redis restarted, then a 10 s Redis outage (SIGSTOP/SIGCONT)", faults_redis,
             COMMON_TODAY),
    Scenario("slow-subscribers", 7, "a slow subscriber and a stuck one (never reads) beside the others",
             faults_none, COMMON_TODAY, extra=extra_slow),
]
TARGET = Scenario("target", 0, "the workload against --target, faults left to the user", faults_none, {},
                  local_only=False)


def run_scenario(sc, rec, target, cluster, size, seed, prefix, log):
    """Run one scenario; returns the Context (actors, errors)."""
    ctx = Context(rec, target, cluster, size, random.Random(seed), log)
    extra = sc.extra(ctx, prefix) if sc.extra else []
    actors, pubs = build_workload(ctx, prefix, extra)
    for a in actors:
        a.start()
    for a in actors:
        if not a.ready.wait(60):
            ctx.errors.append("%s not ready in 60 s" % a.client_id)
    for a in actors:
        if isinstance(a, Subscriber):
            a.subscribed.wait(30)
    rec("phase", name="publishing")
    for pb in pubs:
        pb.start()
    fault_thread = threading.Thread(target=_guard(sc.faults, ctx), daemon=True)
    fault_thread.start()
    for pb in pubs:
        pb.join(max(1, pb.deadline - time.time() + 20))
    rec("phase", name="published")
    fault_thread.join(120)
    # Subscribers that stayed away come back now; then wait for quiet.
    for a in actors:
        a.resume()
    _quiesce(rec, quiet=3.0, limit=30)
    rec("phase", name="drained")
    names = [n.name for n in target.nodes if cluster is None or (n.proc and n.proc.poll() is None)]
    expect = ["%s/ret/%d" % (prefix, i) for i in range(3)]
    for i, via in enumerate(names or ["lb"]):
        retained_probe(rec, target, "%s-probe%d" % (prefix, i), via, "%s/ret/#" % prefix, expect)
    for a in actors + pubs:
        a.stop()
    for a in actors + pubs:
        a.join(25)
        if a.is_alive():
            frame = sys._current_frames().get(a.ident)
            ctx.errors.append("%s still running after stop, at %s" % (
                a.client_id, " < ".join("%s:%d" % (f.name, f.lineno)
                                        for f in reversed(traceback.extract_stack(frame)[-4:])) if frame else "?"))
        if a.error:
            ctx.errors.append(a.error)
    return ctx


def _guard(fn, ctx):
    def run():
        try:
            fn(ctx)
        except Exception as e:
            ctx.errors.append("fault schedule: %r" % e)
            ctx.log("  fault schedule failed: %r" % e)
    return run


def _quiesce(rec, quiet, limit):
    """Until no delivery for `quiet` seconds (at most `limit`)."""
    end = time.time() + limit
    last, last_change = rec.count("deliver"), time.time()
    while time.time() < end:
        time.sleep(0.2)
        n = rec.count("deliver")
        if n != last:
            last, last_change = n, time.time()
        elif time.time() - last_change >= quiet:
            return
