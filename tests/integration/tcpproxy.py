# SPDX-License-Identifier: Apache-2.0
"""A TCP forwarder for tests: `python tcpproxy.py TARGET_PORT [LISTEN_PORT]`
listens on 127.0.0.1:LISTEN_PORT (default: a free port), prints `PORT <n>`
then `READY`, and pipes every
connection to 127.0.0.1:TARGET_PORT. SIGSTOP freezes every connection
through it (they stay open, nothing crosses: a network cut between one node
and its backend); SIGCONT resumes them."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(target, listen=0):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", listen))
    lsock.listen(128)
    print("PORT %d" % lsock.getsockname()[1], flush=True)
    print("READY", flush=True)
    while True:
        client, _ = lsock.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target), timeout=10)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


class Proxy:
    """This file run as a process in front of 127.0.0.1:target (on `listen`,
    or a free port: .port); cut() freezes whoever goes through it."""

    def __init__(self, target, listen=0):
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), str(target), str(listen)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])
        assert self.proc.stdout.readline().strip() == "READY"
        self.frozen = False

    @contextlib.contextmanager
    def cut(self):
        """Nothing crosses meanwhile (its connections stay open)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True
        try:
            yield
        finally:
            self.heal()

    def heal(self):
        if self.frozen:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.frozen = False

    def stop(self):
        self.heal()
        self.proc.kill()
        self.proc.wait(10)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
