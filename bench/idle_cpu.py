#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CPU a node spends holding idle connections, from /proc (not a timed test).

Starts each given shoal binary on a free loopback port, opens --conns idle
MQTT 3.1.1 connections with `shoal-bench conn` (from several source
addresses, so ephemeral ports do not run short), waits until all are held,
then reads utime+stime of the node from /proc/PID/stat over --window
seconds. Prints one JSON line per binary and run: cpu_ms over the window,
the share of one core, and ns per connection per second.

    bench/idle_cpu.py --bench build/bench/shoal-bench [--conns 18000]
        [--window 60] [--keepalive 3600] [--runs 1] [--callgrind DIR] NAME=PATH ...

With --callgrind, the node runs under valgrind's callgrind, instrumented
only for the window (callgrind_control -i on, then a dump), and the line adds
tick_ir: the instructions of the worker ticks (tick_cb, inclusive) over the
window, and ticks: how many ran. Repeatable where CPU time is not.

The process fd limit must cover --conns plus a few for both processes.
"""
import argparse
import glob
import json
import os
import re
import socket
import subprocess
import threading
import time

from idle_mem import wait_port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def tick_cost(out):
    """tick_cb's inclusive instructions and its calls, over the dumps: in
    callgrind_annotate's caller tree a block is the callers ("<", with their
    call counts) and then the function ("*")."""
    ir = calls = 0
    num = r"^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?"
    for f in sorted(glob.glob(out + ".*")):
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--tree=caller", f], check=True,
                              capture_output=True, text=True).stdout
        for block in text.split("\n\n"):
            lines = block.strip().splitlines()
            if not lines or not re.match(num + r"\*\s+\S*:tick_cb ", lines[-1]):
                continue
            ir += int(re.match(num, lines[-1]).group(1).replace(",", ""))
            for line in lines[:-1]:
                m = re.match(num + r"<.*\(([\d,]+)x\)", line)
                if m:
                    calls += int(m.group(2).replace(",", ""))
    return {"tick_ir": ir, "ticks": calls, "ir_per_tick": round(ir / calls) if calls else None}


def measure(a, name, path):
    port = free_port()
    cmd = [path, "--port", str(port), "--bind", "127.0.0.1", "--log-level", "warn", "--max-connections", "0",
           "--workers", str(a.workers)]
    out = None
    if a.callgrind:
        os.makedirs(a.callgrind, exist_ok=True)
        out = os.path.join(a.callgrind, "callgrind.%s.out" % name)
        for f in glob.glob(out + "*"):
            os.unlink(f)
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out] + cmd
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench = None
    try:
        wait_port(port, node, timeout=120 if out else 30)
        hold = a.window + 600
        bcmd = [a.bench, "conn", "--port", str(port), "--conns", str(a.conns), "--duration", str(hold),
                "--keepalive", str(a.keepalive), "--src", "127.0.0.2-127.0.0.20", "--client-prefix",
                "idlecpu-%s-" % name]
        if out:
            bcmd += ["--setup-timeout", "900", "--connect-timeout", "300"]  # a node under valgrind is slow
        bench = subprocess.Popen(bcmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        held = threading.Event()

        def pump():
            for line in bench.stderr:
                if line.startswith("HOLD"):
                    held.set()

        threading.Thread(target=pump, daemon=True).start()
        if not held.wait(timeout=1200):
            raise RuntimeError("connections not all held")
        time.sleep(a.settle)  # the connect burst's own work is over
        hz = os.sysconf("SC_CLK_TCK")
        if out:
            subprocess.run(["callgrind_control", "-i", "on", str(node.pid)], check=True, capture_output=True)
        t0, c0 = time.monotonic(), cpu_ticks(node.pid)
        time.sleep(a.window)
        t1, c1 = time.monotonic(), cpu_ticks(node.pid)
        if out:
            subprocess.run(["callgrind_control", "-d", str(node.pid)], check=True, capture_output=True)
        cpu_ms = (c1 - c0) * 1000.0 / hz
        secs = t1 - t0
        extra = tick_cost(out) if out else {}
        return extra | {"broker": name, "conns": a.conns, "keepalive": a.keepalive, "workers": a.workers,
                "window_s": round(secs, 1), "cpu_ms": round(cpu_ms, 1),
                "core_pct": round(100.0 * cpu_ms / 1000.0 / secs, 3),
                "ns_per_conn_per_s": round(cpu_ms * 1e6 / secs / a.conns, 1)}
    finally:
        if bench and bench.poll() is None:
            bench.terminate()
            bench.wait(timeout=60)
        node.terminate()
        node.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--conns", type=int, default=18000)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--keepalive", type=int, default=3600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--callgrind", help="run under callgrind, its files in this folder")
    ap.add_argument("brokers", nargs="+", help="NAME=PATH of a shoal binary")
    a = ap.parse_args()
    for _ in range(a.runs):
        for spec in a.brokers:
            name, path = spec.split("=", 1)
            print(json.dumps(measure(a, name, path)), flush=True)


if __name__ == "__main__":
    main()
