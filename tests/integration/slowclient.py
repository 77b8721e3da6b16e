# SPDX-License-Identifier: Apache-2.0
"""Slow subscribers on a raw MQTT connection (mqttraw), shared by the
back-pressure and spill tests (test_cluster_backpressure.py,
test_cluster_spill.py): a client that keeps reading but takes its time
before each PUBACK, and one that also stops reading for a while."""
import threading
import time

import mqttraw as R
from pahoclient import uid
from test_cluster import WAIT, wait_for
from test_cluster_positions import subscribe


class SlowReader:
    """Reads PUBLISH packets from a connected raw client, `pace` seconds
    before each PUBACK (the client's own pace, not a wait): never stuck,
    behind any burst. Records payloads, DUP resends, and whether the node
    closed the connection."""

    def __init__(self, r, pace=0.0):
        self.r, self.pace = r, pace
        self.got, self.dups, self.closed = [], 0, False

    def read_one(self):
        """Takes what comes within a second; False once the connection is closed."""
        try:
            pkt = self.r.recv(timeout=1)
        except TimeoutError:
            return True
        except (R.Closed, OSError):  # a reset too: the caller reports it with the node's log
            self.closed = True
            return False
        if pkt is None:
            if self.r.is_closed(timeout=0.1):
                self.closed = True
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
                except OSError:
                    self.closed = True
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
        assert not self.closed, "%s: the node closed the connection after %d" % (name, len(self.got))
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

