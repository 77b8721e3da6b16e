# SPDX-License-Identifier: Apache-2.0
"""The Debian mosquitto command line clients against the broker."""
import queue
import shutil
import subprocess
import threading

import pytest

from pahoclient import uid

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_sub"), reason="mosquitto-clients not installed")

TIMEOUT = 20


class Sub:
    """mosquitto_sub with -d: returns once the SUBACK is seen."""

    def __init__(self, node, *args):
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-h", node.host, "-p", str(node.port), "-d", "-W", str(TIMEOUT),
               *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.seen = []
        while True:
            line = self._line()
            if "received SUBACK" in line:
                break

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _line(self):
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("mosquitto_sub silent; so far: %r" % self.seen)
        if line is None:
            raise AssertionError("mosquitto_sub exited (%s); output: %r" % (self.proc.wait(), self.seen))
        self.seen.append(line)
        return line

    def finish(self):
        """Wait for exit (-C reached); return the non-debug output lines."""
        rc = self.proc.wait(timeout=TIMEOUT + 10)
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        assert rc == 0, (rc, self.seen)
        return [l for l in self.seen if not l.startswith(("Client ", "Subscribed (mid"))]


def pub(node, *args):
    cmd = ["mosquitto_pub", "-h", node.host, "-p", str(node.port), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)


def sub_once(node, *args):
    cmd = ["mosquitto_sub", "-h", node.host, "-p", str(node.port), "-W", str(TIMEOUT), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 10)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r.stdout.splitlines()


def test_basic_roundtrip_v311(node):
    t = uid("mq")
    s = Sub(node, "-t", t, "-C", "1", "-V", "mqttv311")
    pub(node, "-t", t, "-m", "hello from mosquitto_pub", "-V", "mqttv311")
    assert s.finish() == ["hello from mosquitto_pub"]


def test_verbose_topic_and_wildcard(node):
    b = uid("mq")
    s = Sub(node, "-t", b + "/#", "-C", "2", "-v")
    pub(node, "-t", b + "/kitchen/temp", "-m", "21.5")
    pub(node, "-t", b + "/hall", "-m", "19")
    assert s.finish() == [b + "/kitchen/temp 21.5", b + "/hall 19"]


def test_retained(node):
    t = uid("mq")
    pub(node, "-t", t, "-m", "kept", "-r", "-q", "1")
    assert sub_once(node, "-t", t, "-C", "1") == ["kept"]
    # -R skips stale (retained) messages: none arrives within 2 s.
    r = subprocess.run(["mosquitto_sub", "-h", node.host, "-p", str(node.port), "-t", t, "-R", "-C", "1",
                        "-W", "2"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.stdout == ""
    # Delete with an empty retained message.
    pub(node, "-t", t, "-r", "-n")
    r = subprocess.run(["mosquitto_sub", "-h", node.host, "-p", str(node.port), "-t", t, "-C", "1", "-W", "2"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.stdout == ""


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_qos2(node, version):
    t = uid("mq")
    s = Sub(node, "-t", t, "-C", "3", "-q", "2", "-V", version)
    for i in range(3):
        pub(node, "-t", t, "-m", "q2-%d" % i, "-q", "2", "-V", version)
    out = s.finish()
    assert out == ["q2-0", "q2-1", "q2-2"]
    assert any("PUBREL" in l or "PUBCOMP" in l for l in s.seen)


def test_v5_properties(node):
    t = uid("mq")
    s = Sub(node, "-t", t, "-C", "1", "-V", "5", "-F", "%t|%p|%C|%A")
    pub(node, "-t", t, "-m", "body", "-V", "5", "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "user-property", "k", "v")
    out = s.finish()
    assert len(out) == 1
    topic, payload, ctype, _ = out[0].split("|")
    assert (topic, payload, ctype) == (t, "body", "text/plain")


def test_v5_file_payload(node, tmp_path):
    t = uid("mq")
    data = bytes(range(256)) * 64
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    cmd = ["stdbuf", "-o0", "mosquitto_sub", "-h", node.host, "-p", str(node.port), "-d", "-W", str(TIMEOUT), "-t", t, "-C", "1",
           "-V", "5", "-N"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait for SUBACK in the debug output before publishing.
    buf = b""
    while b"SUBACK" not in buf:
        chunk = proc.stdout.read1(4096)
        assert chunk, buf
        buf += chunk
    pub(node, "-t", t, "-f", str(f), "-V", "5", "-q", "1")
    rest, _ = proc.communicate(timeout=TIMEOUT + 10)
    assert proc.returncode == 0
    assert data in buf + rest
