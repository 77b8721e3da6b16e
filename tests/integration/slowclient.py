# SPDX-License-Identifier: Apache-2.0
"""Slow subscribers on a raw MQTT connection (mqttraw), shared by the
back-pressure and spill tests (test_cluster_backpressure.py,
test_cluster_spill.py): a client that keeps reading but takes its time
before each PUBACK, and one that also stops reading for a while."""
import re
import threading
import time

import mqttraw as R
from pahoclient import uid
from test_cluster import WAIT, wait_for
from test_cluster_positions import subscribe


# Node-wide events that close or may close every connection, or say why a
# session fell behind: shown with a client's own lines when it was closed.
NODE_EVENTS = re.compile(r" (info|warn|error) +.*event=(lease_\w+|drain\w*|stream_hold_spent|\w*fence\w*"
                         r"|backend\w*|redis\w*|kafka\w*)| (warn|error) +")
DEBUG = re.compile(r"^\S+ debug ")


def close_report(node, cid, before=40):
    """The node's log around a client's close, for an assertion message: the
    client's own INFO+ lines and the node-wide events (lease lost, fencing,
    drain, backend trouble) up to its event=disconnect and a little after,
    each with its timestamp, so a failure says which rule closed it."""
    lines = node.log().splitlines()
    end = len(lines)
    for i, ln in enumerate(lines):
        if "event=disconnect" in ln and "client=%s " % cid in ln:
            end = min(len(lines), i + 20)
            break
    keep = [ln for ln in lines[:end]
            if ("client=%s " % cid in ln and not DEBUG.search(ln)) or NODE_EVENTS.search(ln)]
    return "\n".join(keep[-before:]) or "(no log line for %s)" % cid


class SlowReader:
    """Reads PUBLISH packets from a connected raw client, `pace` seconds
    before each PUBACK (the client's own pace, not a wait): never stuck,
    behind any burst. Records payloads, DUP resends, and whether the node
    closed the connection."""

    def __init__(self, r, pace=0.0):
        self.r, self.pace = r, pace
        self.got, self.dups, self.closed = [], 0, False
        # How the close showed: a ConnectionResetError on PUBACK means the
        # node closed while PUBLISHes were still buffered here (mid-stream).
        self.how = None

    def read_one(self):
        """Takes what comes within a second; False once the connection is closed."""
        try:
            pkt = self.r.recv(timeout=1)
        except TimeoutError:
            return True
        except (R.Closed, OSError) as e:  # a reset too: the caller reports it with the node's log
            self.closed, self.how = True, "%s on read" % type(e).__name__
            return False
        if pkt is None:
            if self.r.is_closed(timeout=0.1):
                self.closed, self.how = True, "closed on read"
                return False
            return True
        if pkt.type == R.PUBLISH:
            if pkt.dup:
                self.dups += 1
            if self.pace:
                time.sleep(self.pace)
            self.got.append(pkt.payload)
            if pkt.qos == 1:
                try:
                    self.r.send(R.puback(pkt.pid))
                except OSError as e:
                    self.closed, self.how = True, "%s on PUBACK" % type(e).__name__
                    return False
        return True

    def run_until(self, n, timeout):
        """Reads until it has n messages, the connection closes or timeout s pass."""
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            if not self.read_one():
                return


class Slow(SlowReader):
    """A persistent QoS 1 subscriber (Session Expiry 600) to `topic` with
    Receive Maximum 1 that reads on a thread of its own until it has n
    messages: `delay` seconds before each PUBACK, and, if `stall` is set,
    stops reading after that many messages until stall_until() returns true
    (the node has spilled it). halt(): once true, it stops reading for good
    and stays connected."""

    def __init__(self, node, topic, n, delay=0.0, stall=None, stall_until=None, receive_max=1, halt=None,
                 keepalive=0):
        self.cid = uid("slow")
        props = {R.P_SESSION_EXPIRY: 600}
        if receive_max:
            props[R.P_RECEIVE_MAX] = receive_max
        r = R.RawClient(node, version=5, timeout=WAIT)
        ack = r.connect(self.cid, clean=False, version=5, properties=props, keepalive=keepalive)
        assert ack.rc == 0, ack
        subscribe(r, topic, 1)
        super().__init__(r, pace=delay)
        self.node = node
        self.n = n
        self.stall, self.stall_until = stall, stall_until
        self.error = None
        self.stalled = False
        self.expect = None
        self.halt, self.halted = halt, False
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.t.start()
        return self

    def _run(self):
        try:
            while not self._stop and len(self.got) < self.n:
                if self.stall is not None and not self.stalled and len(self.got) >= self.stall:
                    wait_for(self.stall_until, "a spill while not reading", timeout=120)
                    self.stalled = True
                if self.halt is not None and (self.halted or self.halt()):
                    self.halted = True
                    time.sleep(0.05)
                    continue
                if not self.read_one():
                    return
        except Exception as e:  # reported by check()
            self.error = e

    def wait(self, timeout):
        self.t.join(timeout)
        self._stop = True

    def check(self, name):
        """All n, in order (self.expect, else m000000...), no DUP, on one connection."""
        assert self.error is None, "%s: %r" % (name, self.error)
        assert not self.closed, "%s: the node closed the connection after %d (%s); its log:\n%s" % (
            name, len(self.got), self.how, close_report(self.node, self.cid))
        assert len(self.got) >= self.n, "%s: got %d of %d (stalled: no reconnect)" % (name, len(self.got), self.n)
        exp = self.expect or [b"m%06d" % i for i in range(self.n)]
        bad = [i for i, (a, b) in enumerate(zip(self.got, exp)) if a != b]
        assert self.got == exp, "%s: out of order or duplicated (first bad at %s)" % (name, bad[:1] or len(exp))
        assert self.dups == 0, "%s: %d DUP resends on a connection that never dropped" % (name, self.dups)

    def close(self):
        try:
            self.r.send(R.disconnect())
        except OSError:
            pass
        self.r.close()

