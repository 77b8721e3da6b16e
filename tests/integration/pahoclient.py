# SPDX-License-Identifier: Apache-2.0
"""A thin paho-mqtt 2.x wrapper that waits on conditions, never on sleeps."""
import collections
import itertools
import os
import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 15  # seconds: generous, the machine is a noisy 2-core box

_seq = itertools.count()


def uid(prefix="c"):
    """A client id / topic component unique within this test run."""
    return "%s-%d-%d" % (prefix, os.getpid(), next(_seq))


def props(packet_type=PacketTypes.PUBLISH, **kw):
    """paho Properties from keyword args, e.g. props(MessageExpiryInterval=5)."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


class Client:
    """paho client with queues for messages and events.

    version: 5, 4 (3.1.1) or 3 (3.1)."""

    def __init__(self, node, client_id=None, version=5, clean=True, keepalive=60, properties=None,
                 will=None, connect=True, expect_rc=0, transport="tcp"):
        self.node = node
        self.version = version
        self.client_id = uid("paho") if client_id is None else client_id
        proto = {5: mqtt.MQTTv5, 4: mqtt.MQTTv311, 3: mqtt.MQTTv31}[version]
        kw = {}
        if version != 5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=proto,
                             reconnect_on_failure=False, transport=transport, **kw)
        self.clean = clean
        self.keepalive = keepalive
        self.properties = properties
        self.messages = queue.Queue()
        self._held = collections.deque()  # taken from `messages` by barrier(), still to be read
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None
        self.disconnect_rc = None
        self.disconnect_props = None
        self.subacks = {}
        self.unsubacks = {}
        self._ack_cv = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        if will:
            self.c.will_set(**will)
        if connect:
            self.connect(expect_rc)

    # callbacks
    def _on_connect(self, client, userdata, flags, rc, properties):
        self.connack = (flags, rc, properties)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, properties):
        self.disconnect_rc = rc
        self.disconnect_props = properties
        self.disconnected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, rcs, properties):
        with self._ack_cv:
            self.subacks[mid] = rcs
            self._ack_cv.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, rcs, properties):
        with self._ack_cv:
            self.unsubacks[mid] = rcs
            self._ack_cv.notify_all()

    # actions
    def connect(self, expect_rc=0):
        kw = {}
        if self.version == 5:
            kw["clean_start"] = self.clean
            if self.properties is not None:
                kw["properties"] = self.properties
        self.connected.clear()
        self.disconnected.clear()
        self.c.connect(self.node.host, self.node.port, keepalive=self.keepalive, **kw)
        self.c.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK for %s" % self.client_id
        rc = self.connack[1]
        if expect_rc is not None:
            assert rc == expect_rc, "CONNACK %s for %s" % (rc, self.client_id)
        return self.connack

    @property
    def session_present(self):
        return bool(self.connack[0].session_present)

    def subscribe(self, topic, qos=0, options=None, properties=None):
        """Subscribe and wait for SUBACK; returns the list of reason codes (ints)."""
        if options is not None:
            arg = (topic, options)
        elif isinstance(topic, list):
            arg = [(f, SubscribeOptions(qos=q) if self.version == 5 and isinstance(q, int) else q) for f, q in topic]
        else:
            arg = (topic, SubscribeOptions(qos=qos) if self.version == 5 else qos)
        rc, mid = self.c.subscribe(arg, properties=properties) if self.version == 5 else self.c.subscribe(arg)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return [int(x.value) if hasattr(x, "value") else int(x) for x in self._wait_ack(self.subacks, mid)]

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return [int(x.value) if hasattr(x, "value") else int(x) for x in self._wait_ack(self.unsubacks, mid)]

    def _wait_ack(self, table, mid):
        deadline = time.time() + WAIT
        with self._ack_cv:
            while mid not in table:
                left = deadline - time.time()
                assert left > 0, "no ack for mid %d" % mid
                self._ack_cv.wait(left)
            return table.pop(mid)

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if wait and qos > 0:
            info.wait_for_publish(WAIT)
            assert info.is_published(), "publish to %s not acknowledged" % topic
        return info

    def _next(self, timeout):
        if self._held:
            return self._held.popleft()
        return self.messages.get(timeout=timeout)

    def get(self, timeout=WAIT):
        """The next message; fails the test if none arrives in time."""
        try:
            return self._next(timeout)
        except queue.Empty:
            raise AssertionError("%s: no message within %ss" % (self.client_id, timeout))

    def get_n(self, n, timeout=WAIT):
        deadline = time.time() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.time()
            try:
                out.append(self._next(max(0.01, left)))
            except queue.Empty:
                raise AssertionError("%s: got %d of %d messages" % (self.client_id, len(out), n))
        return out

    def none(self, timeout=0.5):
        """Assert no message arrives within `timeout` (used after a barrier)."""
        try:
            m = self._next(timeout)
        except queue.Empty:
            return
        raise AssertionError("unexpected message on %s: %r" % (m.topic, m.payload[:100]))

    def barrier(self, publisher=None):
        """Round trip a marker through the broker to this client, so anything
        published before it by `publisher` (same connection order) has been
        routed. Returns the messages that arrived before the marker."""
        topic = uid("barrier")
        self.subscribe(topic, 1)
        pub = publisher or self
        pub.publish(topic, b"mark", qos=1)
        before = []
        deadline = time.time() + WAIT
        while True:
            m = self._next(max(0.01, deadline - time.time()))
            if m.topic == topic:
                break
            before.append(m)
        # paho hands a QoS 2 message to the application only at PUBREL, so
        # the QoS 1 marker can overtake one the broker sent before it: those
        # open at the marker belong before it. Anything else met meanwhile
        # stays queued for get().
        pending = set(self.c._in_messages)
        while pending & set(self.c._in_messages):
            assert time.time() < deadline, "a QoS 2 delivery never completed"
            time.sleep(0.01)
        later = []
        while pending:
            m = self.messages.get(timeout=max(0.01, deadline - time.time()))
            if m.qos == 2 and m.mid in pending:
                pending.discard(m.mid)
                before.append(m)
            else:
                later.append(m)
        self._held.extend(later)
        self.unsubscribe(topic)
        return before

    def disconnect(self, rc=None, properties=None):
        if self.c.is_connected():
            if self.version == 5 and (rc is not None or properties is not None):
                from paho.mqtt.reasoncodes import ReasonCode
                self.c.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=rc or 0), properties)
            else:
                self.c.disconnect()
            self.disconnected.wait(WAIT)
        self.c.loop_stop()

    def kill(self):
        """Drop the TCP connection without DISCONNECT."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock:
            import socket as _s
            try:
                sock.shutdown(_s.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()
