#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Memory per idle connection and connect rate, one broker at a time, in one run.

Starts each broker on a free loopback port, opens --conns idle MQTT 3.1.1
connections with shoal-bench's `conn` scenario (CONNECT with a client id,
wait for CONNACK, hold), and reports the broker's RSS growth per connection
sampled while they are held. For Shoal it also reports the growth of its
counted heap (shoal_heap_bytes on /metrics), which excludes libevent's and
the C library's own allocations and malloc overhead.

    bench/idle_mem.py --bench build/bench/shoal-bench --shoal build/node/shoal \
        [--mosquitto /usr/sbin/mosquitto] [--conns 10000] [--runs 1]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("broker exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not listen on %d" % port)


def heap_bytes(http_port):
    if not http_port:
        return None
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("shoal_heap_bytes "):
                return float(line.split()[1])
    return None


def start_shoal(path, workers):
    port, http = free_port(), free_port()
    cmd = [path, "--port", str(port), "--bind", "127.0.0.1", "--http-port", str(http), "--http-bind", "127.0.0.1",
           "--log-level", "warn", "--max-connections", "0"]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, http, None


def start_mosquitto(path):
    port = free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write("listener %d 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n"
               "log_dest none\n" % port)
    conf.close()
    proc = subprocess.Popen([path, "-c", conf.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, None, conf.name


def measure(bench, name, proc, port, http, conns, hold):
    wait_port(port, proc)
    time.sleep(0.5)
    before = rss_kib(proc.pid)
    heap0 = heap_bytes(http)
    sample = {}
    cmd = [bench, "conn", "--port", str(port), "--conns", str(conns), "--duration", str(hold),
           "--src", "127.0.0.2-127.0.0.20", "--client-prefix", "idle-%s-" % name]
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pump():
        for line in b.stderr:
            if line.startswith("HOLD") and "rss" not in sample:
                time.sleep(1.0)  # let the broker settle
                sample["rss"] = rss_kib(proc.pid)
                sample["heap"] = heap_bytes(http)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    out = b.stdout.read()
    b.wait(timeout=hold + 600)
    t.join(timeout=10)
    res = json.loads(out.strip().splitlines()[-1])
    n = res["counts"]["connected"]
    row = {"broker": name, "connected": n, "connects_per_s": res["rates"]["connects_per_s"]}
    if n and "rss" in sample:
        row["rss_bytes_per_conn"] = round((sample["rss"] - before) * 1024.0 / n, 1)
        if heap0 is not None and sample.get("heap") is not None:
            row["heap_bytes_per_conn"] = round((sample["heap"] - heap0) / n, 1)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bench/shoal-bench")
    ap.add_argument("--shoal", default="build/node/shoal")
    ap.add_argument("--mosquitto", default=None)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--hold", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    a = ap.parse_args()
    brokers = [("shoal", lambda: start_shoal(a.shoal, a.workers))]
    if a.mosquitto:
        brokers.append(("mosquitto", lambda: start_mosquitto(a.mosquitto)))
    for _ in range(a.runs):
        for name, start in brokers:
            proc, port, http, conf = start()
            try:
                print(json.dumps(measure(a.bench, name, proc, port, http, a.conns, a.hold)), flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if conf:
                    os.unlink(conf)


if __name__ == "__main__":
    sys.exit(main())
