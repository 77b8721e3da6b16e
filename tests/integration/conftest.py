# SPDX-License-Identifier: Apache-2.0
"""Fixtures that start the real shoal binary on free ports."""
import os
import socket
import subprocess
import threading
import time

import pytest

SHOAL_BIN = os.environ.get("SHOAL_BIN", os.path.join(os.path.dirname(__file__), "../../build/node/shoal"))


class Node:
    """A running shoal process. Its stderr is kept for assertions on logs."""

    def __init__(self, *args, env=None):
        # --http-port 0: every node gets its own free HTTP port (the default,
        # 8080, would collide between nodes and test runs).
        cmd = [SHOAL_BIN, "--port", "0", "--bind", "127.0.0.1", "--log-level", "debug", "--http-port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.log_lines = []
        self._log_lock = threading.Lock()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        # Before READY, in any order: "HTTP http://…", and with their flags
        # "TLS mqtts://…", "WS ws://HOST:PORT/PATH", "WSS wss://HOST:PORT/PATH".
        self.http_url = None
        self.tls_port = self.ws_port = self.wss_port = None
        self.ws_path = None
        while True:
            line = self.proc.stdout.readline()
            word = line.split(None, 1)[0] if line.strip() else ""
            if word == "HTTP":
                self.http_url = line.split(None, 1)[1].strip()
            elif word == "TLS":
                self.tls_port = int(line.strip().rsplit(":", 1)[1])
            elif word in ("WS", "WSS"):
                hostport, _, path = line.split(None, 1)[1].strip().split("://", 1)[1].partition("/")
                setattr(self, "ws_port" if word == "WS" else "wss_port", int(hostport.rsplit(":", 1)[1]))
                self.ws_path = "/" + path
            else:
                break
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError("shoal did not start: %r\n%s" % (line, self.log()))
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.host = "127.0.0.1"

    def _pump_stderr(self):
        for line in self.proc.stderr:
            with self._log_lock:
                self.log_lines.append(line)

    def log(self):
        with self._log_lock:
            return "".join(self.log_lines)

    def wait_log(self, needle, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.wait_stopped()
        return self.proc.returncode

    def wait_stopped(self):
        """Wait for a node sent SIGTERM (kill it after 20 s)."""
        if self.proc.returncode is None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def node_factory():
    nodes = []

    def make(*args, **kw):
        n = Node(*args, **kw)
        nodes.append(n)
        return n

    yield make
    # SIGTERM to all first: each takes a few hundred ms to stop, together.
    for n in nodes:
        if n.proc.poll() is None:
            n.proc.terminate()
    for n in nodes:
        rc = n.wait_stopped()
        # A clean SIGTERM stop exits 0; anything else (a crash, an ASan
        # report) fails the test that used the node.
        assert rc == 0, "shoal exited with %s\n%s" % (rc, n.log()[-4000:])


@pytest.fixture
def node(node_factory):
    return node_factory("--workers", "2", "--sys-interval", "1")


def raw_connect(node, timeout=5):
    s = socket.create_connection((node.host, node.port), timeout=timeout)
    s.settimeout(timeout)
    return s
