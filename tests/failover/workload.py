# SPDX-License-Identifier: Apache-2.0
"""The workload of the failover suite: real MQTT clients (paho-mqtt, and one
raw socket client that never reads) that record everything they see.

Every actor writes events to one Recorder: a history of JSON objects, one per
line, each with "t" (Unix time, s) and "ev":

  connect     client, conn (n-th connection), node, version, persistent,
              session_present, will (message id or absent)
  disconnect  client, conn, node, rc
  connfail    client, target, error            (a connect attempt that failed)
  subscribe   client, conn, filter, qos        (sent)
  suback      client, conn, filter, granted    (granted QoS, or >= 0x80 refused)
  send        client, msg, topic, qos, retain, seq, expiry (v5 message expiry
              interval, s, when set)
  pub_end     client, sent, count, reason    (done, stopped or deadline)
  ack         client, msg, rc                  (QoS 1 PUBACK, QoS 2 PUBREC: success)
  refused     client, msg, rc, stage           (an ack with a reason code >= 0x80)
  complete    client, msg, rc                  (QoS 2 PUBCOMP)
  release     client, msg, conn                (QoS 2 PUBREL sent, by a raw client
                                                that held it across a fault)
  session_check client, node, expect, present  (session expiry: was the session
                                                there when it should (not) be)
  members     node, round, members             (admin API: nodes a node lists)
  rss         node, kb, pid                    (a node's resident memory)
  deliver     client, conn, node, msg, topic, qos, dup, retain
  probe       client, node, filter             (a retained probe subscribed)
  clients     node, round, ids                 (admin API sample: ids connected there)
  fault       kind, target, detail             (what the scenario did)
  phase       name                             (publishing-done, drained, ...)

A message id is "<publisher client id>:<seq>" and is the whole payload, so a
delivery names the message it carries; a will's id is "<client id>:will".
"""
import itertools
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../integration"))
import mqttraw as R  # noqa: E402

from cluster import http_json  # noqa: E402


class Recorder:
    """A thread-safe history: kept in memory and appended to a JSONL file."""

    def __init__(self, path=None):
        self.events = []
        self._lock = threading.Lock()
        self._f = open(path, "w") if path else None

    def __call__(self, ev, **fields):
        e = {"t": round(time.time(), 6), "ev": ev, **fields}
        with self._lock:
            self.events.append(e)
            if self._f:
                self._f.write(json.dumps(e, sort_keys=True) + "\n")
        return e

    def count(self, ev, **match):
        with self._lock:
            return sum(1 for e in self.events if e["ev"] == ev and all(e.get(k) == v for k, v in match.items()))

    def count_since(self, ev, t, **match):
        with self._lock:
            return sum(1 for e in self.events if e["ev"] == ev and e["t"] >= t
                       and all(e.get(k) == v for k, v in match.items()))

    def close(self):
        if self._f:
            self._f.close()
            self._f = None


class Target:
    """Where clients connect: the load balancer (or the --target the user
    named), and the nodes themselves when known (name, port, admin URL)."""

    def __init__(self, host, port, nodes=(), admin_token=None):
        self.host, self.port = host, port
        self.nodes = list(nodes)  # objects with name, port, http_url
        self.admin_token = admin_token

    def address(self, via):
        """via: "lb" or a node name -> (host, port, node name or None)."""
        if via == "lb":
            return self.host, self.port, None
        n = next(n for n in self.nodes if n.name == via)
        return "127.0.0.1", n.port, n.name

    def locate(self, client_id):
        """The nodes whose admin API lists client_id as connected."""
        found = []
        for n in self.nodes:
            if not n.http_url:
                continue
            j = http_json("%s/api/v1/clients/%s" % (n.http_url, urllib.parse.quote(client_id, safe="")),
                          token=self.admin_token, timeout=2)
            if j and j.get("connected"):
                found.append(n.name)
        return found


class _Paho(mqtt.Client):
    """paho ignores the reason code of a PUBREC; record it."""

    def __init__(self, *a, on_pubrec=None, **kw):
        super().__init__(*a, **kw)
        self.on_pubrec_rc = on_pubrec

    def _handle_pubrec(self):
        if self.on_pubrec_rc:
            r = _packet.decode_pubrec(self._in_packet["command"], self._in_packet["packet"], self._protocol)
            self.on_pubrec_rc(r.mid, int(getattr(r.reason, "value", r.reason or 0)))
        return super()._handle_pubrec()


def _rc(reason_code):
    return int(getattr(reason_code, "value", reason_code or 0))


class Actor(threading.Thread):
    """One client id, with its own thread. stop() asks it to finish."""

    def __init__(self, rec, target, client_id, version=5, via="lb", reconnect="lb", deadline=None):
        super().__init__(daemon=True, name=client_id)
        self.rec, self.target = rec, target
        self.client_id, self.version, self.via = client_id, version, via
        self.reconnect = reconnect  # "lb", "same", "end" (only after resume()) or "never"
        self.deadline = deadline or time.time() + 300
        self.stopping = threading.Event()
        self.resumed = threading.Event()
        self.ready = threading.Event()
        self.conn = 0
        self.node = None
        self.connected = threading.Event()
        self.lost = threading.Event()
        self.error = None

    def stop(self):
        self.stopping.set()
        self.resumed.set()

    def resume(self):
        self.resumed.set()

    # -- one connection through paho ---------------------------------------
    def _make_client(self, persistent, on_pubrec=None):
        proto = mqtt.MQTTv5 if self.version == 5 else mqtt.MQTTv311
        kw = {} if self.version == 5 else {"clean_session": not persistent}
        c = _Paho(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=proto,
                  reconnect_on_failure=False, on_pubrec=on_pubrec, **kw)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        return c

    def _on_connect(self, client, userdata, flags, rc, properties):
        self.connack = (bool(getattr(flags, "session_present", False)), _rc(rc))
        if _rc(rc) == 0:
            self.connected.set()
        else:
            self.lost.set()

    def _on_disconnect(self, client, userdata, flags, rc, properties):
        if self.connected.is_set():
            self.rec("disconnect", client=self.client_id, conn=self.conn, node=self.node, rc=_rc(rc))
        self.connected.clear()
        self.lost.set()

    def _connect(self, c, via, persistent, clean_first, will=None):
        """One attempt; True once CONNACK 0 arrived and `connect` is recorded."""
        host, port, node = self.target.address(via)
        props = None
        if self.version == 5:
            props = Properties(PacketTypes.CONNECT)
            if persistent:
                props.SessionExpiryInterval = 3600
        self.connected.clear()
        self.lost.clear()
        self.connack = None
        try:
            if self.version == 5:
                c.connect(host, port, keepalive=10, clean_start=clean_first or not persistent, properties=props)
            else:
                c.connect(host, port, keepalive=10)
        except OSError as e:
            self.rec("connfail", client=self.client_id, target="%s:%d" % (host, port), error=str(e))
            return False
        c.loop_start()
        end = time.time() + 15
        while not (self.connected.is_set() or self.lost.is_set()) and time.time() < end:
            self.connected.wait(0.05)
        if not self.connected.is_set():
            c.loop_stop()
            try:
                c.disconnect()
            except Exception:
                pass
            self.rec("connfail", client=self.client_id, target="%s:%d" % (host, port),
                     error="no CONNACK" if self.connack is None else "CONNACK rc %d" % self.connack[1])
            return False
        self.conn += 1
        if node is None and self.target.nodes:
            found = self.target.locate(self.client_id)
            node = found[0] if len(found) == 1 else ("?" + ",".join(found) if found else None)
        self.node = node
        self.rec("connect", client=self.client_id, conn=self.conn, node=node, version=self.version,
                 persistent=persistent, session_present=self.connack[0], target="%s:%d" % (host, port),
                 **({"will": will} if will else {}))
        return True

    def _connect_retrying(self, c, via, persistent, clean_first, will=None):
        """Try until connected, asked to stop, or past the deadline."""
        delay = 0.2
        while not self.stopping.is_set() and time.time() < self.deadline:
            if self._connect(c, via, persistent, clean_first, will):
                return True
            self.stopping.wait(delay)
            delay = min(delay * 1.5, 1.0)
        return False

    def _next_via(self):
        return self.via if self.reconnect == "same" else "lb"

    def run(self):
        try:
            self.body()
        except Exception as e:  # recorded, and reported by the runner
            self.error = "%s: %r" % (self.client_id, e)
            self.rec("actor_error", client=self.client_id, error=repr(e))
        finally:
            self.ready.set()


class Subscriber(Actor):
    """A subscriber; persistent (3.1.1 clean session 0, v5 session expiry
    3600) or not. It resubscribes whenever the session was not present.
    slow: seconds spent in each message callback (delays its acks).
    resume_session: its first connection resumes the session (clean start 0), as a
    client that moves to another node does; otherwise it starts clean.
    inherit: the Subscriber (same client id) this one continues: its client
    side session state, the QoS 2 messages it sent PUBREC for and awaits
    PUBREL (MQTT 5 §4.1: the client keeps them across connections), is
    taken over at the first CONNACK. paho hands a QoS 2 message to the
    application only at PUBREL, so a fresh paho client would answer the new
    owner's PUBREL for such a message with PUBCOMP and drop it."""

    def __init__(self, *a, filters=(), persistent=True, slow=0.0, resume_session=False, inherit=None, **kw):
        super().__init__(*a, **kw)
        self.filters = list(filters)
        self.persistent = persistent
        self.resume_session = resume_session
        self.inherit = inherit
        self.paho = None
        self.slow = slow
        self.delivered = 0
        self._sub_mids = {}
        self._early_sub = {}
        self._sub_lock = threading.Lock()
        self.subscribed = threading.Event()

    def _on_message(self, client, userdata, m):
        try:
            msg = m.payload.decode()
        except UnicodeDecodeError:
            msg = repr(m.payload)
        self.rec("deliver", client=self.client_id, conn=self.conn, node=self.node, msg=msg, topic=m.topic,
                 qos=m.qos, dup=bool(m.dup), retain=bool(m.retain))
        self.delivered += 1
        if self.slow:
            time.sleep(self.slow)

    # The SUBACK may arrive (on paho's thread) before subscribe() has
    # returned its mid: it then waits in self._early_sub until the mid is
    # known. The lock guards the two dicts only, never a paho call.
    def _on_subscribe(self, client, userdata, mid, rcs, properties):
        with self._sub_lock:
            filters = self._sub_mids.pop(mid, None)
            if filters is None:
                self._early_sub[mid] = rcs
                return
        self._record_suback(filters, rcs)

    def _record_suback(self, filters, rcs):
        for (f, _), rc in zip(filters, rcs):
            self.rec("suback", client=self.client_id, conn=self.conn, filter=f, granted=_rc(rc))
        self.subscribed.set()

    def _subscribe(self, c):
        for f, q in self.filters:
            self.rec("subscribe", client=self.client_id, conn=self.conn, filter=f, qos=q)
        rc, mid = c.subscribe([(f, q) for f, q in self.filters])
        with self._sub_lock:
            rcs = self._early_sub.pop(mid, None)
            if rcs is None:
                self._sub_mids[mid] = list(self.filters)
        if rcs is not None:
            self._record_suback(list(self.filters), rcs)

    def _on_connect(self, client, userdata, flags, rc, properties):
        if self.inherit is not None and self.inherit.paho is not None and _rc(rc) == 0:
            # Before paho reads the packets after CONNACK (a PUBREL among them).
            client._in_messages.update(self.inherit.paho._in_messages)
            self.inherit = None
        super()._on_connect(client, userdata, flags, rc, properties)

    def body(self):
        c = self._make_client(self.persistent)
        self.paho = c
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        via, first = self.via, not self.resume_session
        while not self.stopping.is_set():
            if not self._connect_retrying(c, via, self.persistent, first):
                break
            first = False
            if not self.connack[0] or not self.persistent:
                self._subscribe(c)
            else:
                self.subscribed.set()
            self.ready.set()
            while not self.stopping.is_set() and not self.lost.is_set():
                self.lost.wait(0.1)
            c.loop_stop()
            if self.stopping.is_set():
                break
            if self.reconnect == "never":
                break
            if self.reconnect == "end":
                self.resumed.wait(max(0, self.deadline - time.time()))
            via = self._next_via()
        _close(c, self)


class Publisher(Actor):
    """Publishes `count` messages over `topics` (round robin) at `rate` per
    second, at most `window` unacknowledged. A connection that drops leaves
    its unacknowledged messages unknown (a new connection, a fresh paho
    client: nothing is resent), and publishing goes on with the next seq."""

    def __init__(self, *a, topics=(), qos=1, count=100, rate=50.0, window=8, retain=False, expiry=None, **kw):
        super().__init__(*a, **kw)
        self.topics, self.qos, self.count = list(topics), qos, count
        self.expiry = expiry  # v5 message expiry interval (s)
        self.rate, self.window, self.retain = rate, window, retain
        self.sent = 0
        self._lock = threading.Lock()
        self._mids = {}
        self._early = {}
        self._cv = threading.Condition(self._lock)
        self.done = threading.Event()

    def finish(self):
        """End after the message being sent now: an open-ended publisher
        (count larger than it needs) whose scenario has seen enough."""
        self.count = min(self.count, self.sent + 1)

    def acks_since(self, t):
        """Acknowledged messages of this publisher after time t."""
        return self.rec.count_since("ack", t, client=self.client_id)

    # paho calls these holding its _out_message_mutex, which publish() takes
    # too: so publish() is never called holding self._lock (a lock-order
    # inversion), and an ack that comes before publish() returned its mid
    # waits in self._early until the mid is known.
    def _on_publish(self, client, userdata, mid, rc, properties):
        with self._cv:
            msg = self._mids.pop(mid, None)
            if msg is None:
                self._early.setdefault(mid, []).append(("publish", rc))
                return
            self._cv.notify_all()
        self._publish_done(msg, rc)

    def _publish_done(self, msg, rc):
        code = _rc(rc)
        if self.qos == 2:
            # PUBREC decided ack/refused (_on_pubrec); this is the PUBCOMP.
            self.rec("complete", client=self.client_id, msg=msg, rc=code)
        elif self.qos == 1:
            if code >= 0x80:
                self.rec("refused", client=self.client_id, msg=msg, rc=code, stage="puback")
            else:
                self.rec("ack", client=self.client_id, msg=msg, rc=code)

    def _on_pubrec(self, mid, code):
        with self._lock:
            msg = self._mids.get(mid)
            if msg is None:
                self._early.setdefault(mid, []).append(("pubrec", code))
                return
        self._pubrec_done(msg, code)

    def _pubrec_done(self, msg, code):
        if code >= 0x80:
            self.rec("refused", client=self.client_id, msg=msg, rc=code, stage="pubrec")
        else:
            self.rec("ack", client=self.client_id, msg=msg, rc=code)

    def body(self):
        c = None
        start = time.time()
        self.ready.set()
        seq = -1
        while seq + 1 < self.count:
            seq += 1
            if self.stopping.is_set() or time.time() > self.deadline:
                break
            due = start + seq / self.rate
            if due > time.time():
                self.stopping.wait(due - time.time())
            if c is None or self.lost.is_set():
                if c is not None:
                    c.loop_stop()
                    with self._cv:
                        self._mids.clear()
                c = self._make_client(False, on_pubrec=self._on_pubrec)
                c.on_publish = self._on_publish
                c.max_inflight_messages_set(self.window)
                via = self.via if self.conn == 0 else self._next_via()
                if not self._connect_retrying(c, via, False, True):
                    break
            with self._cv:
                while (len(self._mids) >= self.window and not self.lost.is_set() and not self.stopping.is_set()
                       and time.time() < self.deadline):
                    self._cv.wait(0.1)
                if self.lost.is_set():
                    continue  # this seq is skipped, never sent
                if len(self._mids) >= self.window:
                    break  # stopped, or past the deadline
                self._early.clear()
            topic = self.topics[seq % len(self.topics)]
            msg = "%s:%d" % (self.client_id, seq)
            props = None
            if self.expiry:
                props = Properties(PacketTypes.PUBLISH)
                props.MessageExpiryInterval = self.expiry
            self.rec("send", client=self.client_id, msg=msg, topic=topic, qos=self.qos, retain=self.retain, seq=seq,
                     **({"expiry": self.expiry} if self.expiry else {}))
            info = c.publish(topic, msg.encode(), qos=self.qos, retain=self.retain, properties=props)
            if self.qos > 0:
                with self._cv:
                    self._mids[info.mid] = msg
                    early = self._early.pop(info.mid, [])
                for kind, code in early:
                    if kind == "pubrec":
                        self._pubrec_done(msg, code)
                    else:
                        with self._cv:
                            self._mids.pop(info.mid, None)
                        self._publish_done(msg, code)
            self.sent = seq + 1
        # Wait (bounded) for the last acks.
        end = time.time() + 15
        with self._cv:
            while self._mids and not self.lost.is_set() and not self.stopping.is_set() and time.time() < end:
                self._cv.wait(0.1)
        self.rec("pub_end", client=self.client_id, sent=self.sent, count=self.count,
                 reason="done" if self.sent >= self.count else ("stopped" if self.stopping.is_set() else "deadline"))
        self.done.set()
        if c is not None:
            _close(c, self)


def _close(c, actor):
    """DISCONNECT, and if the broker does not read it (a paused publisher)
    within 3 s, close the socket: paho's loop would wait for ever."""
    if actor.connected.is_set():
        c.disconnect()
        if not actor.lost.wait(3):
            sock = c.socket()
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    c.loop_stop()


class WillClient(Actor):
    """Connects with a will (QoS 1, its id "<client id>:will") and stays
    connected until the end, or until its node dies; never reconnects."""

    def __init__(self, *a, will_topic=None, **kw):
        super().__init__(*a, reconnect="never", **kw)
        self.will_topic = will_topic

    def body(self):
        c = self._make_client(False)
        msg = "%s:will" % self.client_id
        c.will_set(self.will_topic, msg.encode(), qos=1)
        if not self._connect_retrying(c, self.via, False, True, will=msg):
            return
        self.ready.set()
        while not self.stopping.is_set() and not self.lost.is_set():
            self.lost.wait(0.1)
        _close(c, self)  # a normal DISCONNECT: the will is discarded


class Holder(Actor):
    """Holds one connection with its client id and does nothing else
    (two Holders with one id on two nodes test invariant 3)."""

    def body(self):
        c = self._make_client(False)
        if not self._connect_retrying(c, self.via, False, True):
            return
        self.ready.set()
        while not self.stopping.is_set() and not self.lost.is_set():
            self.lost.wait(0.1)
        _close(c, self)


class StuckSubscriber(Actor):
    """A raw MQTT 3.1.1 client that subscribes at QoS 1 and then never reads
    its socket: the broker's output buffer for it fills and stays full."""

    def __init__(self, *a, filter="#", **kw):
        super().__init__(*a, reconnect="never", **kw)
        self.filter = filter

    def body(self):
        host, port, node = self.target.address(self.via)
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(R.connect(self.client_id, version=4, clean=True, keepalive=0))
        s.recv(4)  # CONNACK
        self.conn = 1
        self.rec("connect", client=self.client_id, conn=1, node=node, version=4, persistent=False,
                 session_present=False, target="%s:%d" % (host, port), stuck=True)
        s.sendall(R.subscribe(1, [(self.filter, 1)], version=4))
        self.rec("subscribe", client=self.client_id, conn=1, filter=self.filter, qos=1)
        self.ready.set()
        self.stopping.wait(max(0, self.deadline - time.time()))
        s.close()
        self.rec("disconnect", client=self.client_id, conn=1, node=node, rc=0)


class Qos2Holder(Actor):
    """A raw MQTT 5 publisher with a persistent session that sends `n` QoS 2
    messages, records each PUBREC as the ack, and holds every PUBREL until
    release() (the scenario kills its node meanwhile). Then it reconnects
    through `reconnect_via` with the session (clean start 0), sends the
    PUBRELs and records each PUBCOMP: MQTT 5 §4.3.3, the receiver answers
    PUBREL with PUBCOMP (0x92 if it no longer knows the packet id; the
    message was already passed on at PUBREC)."""

    def __init__(self, *a, topic=None, n=4, reconnect_via="lb", **kw):
        super().__init__(*a, reconnect="lb", **kw)
        self.topic, self.n, self.reconnect_via = topic, n, reconnect_via
        self.held = threading.Event()
        self.pending = []  # (pid, msg) acknowledged by PUBREC, PUBREL held

    def _open(self, via, clean):
        host, port, node = self.target.address(via)
        try:
            c = _RawConn(host, port)
            ca = c.connect(self.client_id, clean=clean, keepalive=30,
                           properties={R.P_SESSION_EXPIRY: 3600})
        except (OSError, R.Closed, TimeoutError, AssertionError) as e:
            self.rec("connfail", client=self.client_id, target="%s:%d" % (host, port), error=repr(e))
            return None
        if ca.rc != 0:
            self.rec("connfail", client=self.client_id, target="%s:%d" % (host, port), error="CONNACK rc %d" % ca.rc)
            c.close()
            return None
        self.conn += 1
        if node is None and self.target.nodes:
            found = self.target.locate(self.client_id)
            node = found[0] if len(found) == 1 else None
        self.node = node
        self.rec("connect", client=self.client_id, conn=self.conn, node=node, version=5, persistent=True,
                 session_present=ca.session_present, target="%s:%d" % (host, port))
        return c

    def body(self):
        c = self._open(self.via, True)
        if c is None:
            return
        self.ready.set()
        for i in range(self.n):
            pid, msg = i + 1, "%s:%d" % (self.client_id, i)
            self.rec("send", client=self.client_id, msg=msg, topic=self.topic, qos=2, retain=False, seq=i)
            c.send(R.publish(self.topic, msg.encode(), qos=2, pid=pid))
            try:
                p = c.expect(R.PUBREC, timeout=30, skip=(R.PUBLISH,))
            except (OSError, R.Closed, TimeoutError) as e:
                self.rec("disconnect", client=self.client_id, conn=self.conn, node=self.node, rc=-1)
                self.error = "%s: no PUBREC for %s: %r" % (self.client_id, msg, e)
                return
            if p.rc >= 0x80:
                self.rec("refused", client=self.client_id, msg=msg, rc=p.rc, stage="pubrec")
            else:
                self.rec("ack", client=self.client_id, msg=msg, rc=p.rc)
                self.pending.append((pid, msg))
        self.held.set()
        self.resumed.wait(max(0, self.deadline - time.time()))
        c.close()
        self.rec("disconnect", client=self.client_id, conn=self.conn, node=self.node, rc=-1)
        if not self.pending or self.stopping.is_set():
            return
        delay = 0.2
        while time.time() < self.deadline:
            c = self._open(self.reconnect_via, False)
            if c is not None:
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        else:
            return
        try:
            for pid, msg in self.pending:
                self.rec("release", client=self.client_id, msg=msg, conn=self.conn)
                c.send(R.pubrel(pid))
                p = c.expect(R.PUBCOMP, timeout=30, skip=(R.PUBLISH, R.PUBREL))
                self.rec("complete", client=self.client_id, msg=msg, rc=p.rc)
            c.send(R.disconnect(0, properties={R.P_SESSION_EXPIRY: 0}))
        except (OSError, R.Closed, TimeoutError) as e:
            self.rec("actor_note", client=self.client_id, note="no PUBCOMP: %r" % e)
        c.close()
        self.rec("disconnect", client=self.client_id, conn=self.conn, node=self.node, rc=0)


class _RawConn(R.RawClient):
    """mqttraw.RawClient on a host and port."""

    def __init__(self, host, port, version=5, timeout=15):
        class _N:
            pass
        n = _N()
        n.host, n.port = host, port
        super().__init__(n, version=version, timeout=timeout)


def session_expiry_probe(rec, target, client_id, via_a, via_b, expiry, stopping):
    """Session expiry across nodes (MQTT 5 §3.1.2.11.2): a session left on
    via_a with expiry `expiry` s is still there at once on via_b, and gone
    from via_a once `expiry` s have passed (with margin). Records
    session_check events."""
    props = {R.P_SESSION_EXPIRY: expiry}

    def visit(via, clean, expect):
        host, port, node = target.address(via)
        try:
            c = _RawConn(host, port)
            ca = c.connect(client_id, clean=clean, keepalive=30, properties=props)
        except (OSError, R.Closed, TimeoutError, AssertionError) as e:
            rec("connfail", client=client_id, target="%s:%d" % (host, port), error=repr(e))
            return None
        if expect is not None:
            rec("session_check", client=client_id, node=node, expect=expect, present=ca.session_present,
                expiry=expiry)
        if clean:
            c.send(R.subscribe(1, [("%s/x" % client_id, 1)]))
            c.expect(R.SUBACK, timeout=15)
        c.send(R.disconnect(0))
        c.close()
        return time.time()

    if visit(via_a, True, None) is None:
        return
    left = visit(via_b, False, "present")
    if left is None:
        return
    # Expired by Redis's clock; the margin covers a loaded machine.
    stopping.wait(max(0, left + expiry + 6 - time.time()))
    visit(via_a, False, "absent")
    c = None
    try:
        host, port, _ = target.address(via_a)
        c = _RawConn(host, port)
        c.connect(client_id, clean=True, properties={R.P_SESSION_EXPIRY: 0})
        c.send(R.disconnect(0))
    except (OSError, R.Closed, TimeoutError, AssertionError):
        pass
    finally:
        if c:
            c.close()


def retained_probe(rec, target, client_id, via, filter, expect_topics, timeout=10):
    """Subscribe to `filter` on one node and record the retained messages
    that arrive (until one per expected topic, or timeout)."""
    got = {}
    done = threading.Event()
    host, port, node = target.address(via)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def on_message(client, userdata, m):
        rec("deliver", client=client_id, conn=1, node=node, msg=m.payload.decode(errors="replace"), topic=m.topic,
            qos=m.qos, dup=bool(m.dup), retain=bool(m.retain))
        if m.retain:
            got[m.topic] = True
            if set(expect_topics) <= set(got):
                done.set()

    subscribed = threading.Event()
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    try:
        c.connect(host, port, keepalive=10)
    except OSError as e:
        rec("connfail", client=client_id, target="%s:%d" % (host, port), error=str(e))
        return
    c.loop_start()
    rec("probe", client=client_id, node=node, filter=filter)
    c.subscribe(filter, qos=1)
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()


class Sampler(threading.Thread):
    """Polls every node's GET /api/v1/clients and records who is connected
    where (invariant 3). A node that does not answer is skipped."""

    def __init__(self, rec, target, prefix, interval=0.5, members=True):
        super().__init__(daemon=True, name="sampler")
        self.rec, self.target, self.prefix, self.interval = rec, target, prefix, interval
        self.members = members
        self.stopping = threading.Event()
        self.rounds = itertools.count(1)

    def run(self):
        while not self.stopping.is_set():
            r = next(self.rounds)
            for n in self.target.nodes:
                j = http_json("%s/api/v1/clients?filter=%s&limit=10000" % (n.http_url, urllib.parse.quote(self.prefix)),
                              token=self.target.admin_token, timeout=2)
                if j is None:
                    continue
                ids = sorted(c["client_id"] for c in j.get("clients", []) if c.get("connected"))
                self.rec("clients", node=n.name, round=r, ids=ids)
                if self.members:
                    j = http_json("%s/api/v1/nodes" % n.http_url, token=self.target.admin_token, timeout=2)
                    if j is not None:
                        self.rec("members", node=n.name, round=r,
                                 members=sorted(x.get("node_id", "?") for x in j.get("nodes", [])))
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(10)
