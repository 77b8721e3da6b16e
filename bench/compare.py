#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Starts Shoal and each peer (bench/peers.py) one at a time, runs the same
shoal-bench scenarios against each, stops it by PID, then writes
results.json, results.md (a column per broker and a ratio Shoal/best peer)
and PNG plots into --out. Exits 1 when a number of Shoal or Mosquitto is not
sane; a peer's problems are listed, not judged."""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import peers as peers_mod

SIZE = 64
LATENCY_RATE = 10000


def scenarios(quick, secs=None, lat_secs=None):
    """(name, scenario, shoal-bench args, what it measures). Quick keeps
    every scenario but with small counts and seconds; secs and lat_secs
    override the throughput and latency durations of a full run."""
    if quick:
        idle, hold, pubs, subs, secs, lat_rate, lat_secs = 500, 2, 10, 20, 3, 2000, 4
    else:
        idle, hold, pubs, subs = 10000, 15, 100, 100
        secs, lat_rate, lat_secs = secs or 15, LATENCY_RATE, lat_secs or 60
    common = ["--size", str(SIZE), "--drain", "10"]
    src = ["--src", "127.0.0.2-127.0.0.20"]
    return [
        ("idle", "conn", ["--conns", str(idle), "--pending", "256", "--duration", str(hold), *src],
         "idle connections, 256 connects in flight"),
        # Issue 20 compares connect rates at 50 in flight too: 256 overflows
        # a listen backlog of 100 (Mosquitto's), which then measures the
        # backlog rather than the connect path.
        ("conn50", "conn", ["--conns", str(idle), "--pending", "50", "--duration", "1", *src],
         "connect rate, 50 connects in flight"),
        ("fanin_q0", "fanin", ["--pubs", str(pubs), "--subs", "1", "--qos", "0", "--duration", str(secs), *common],
         "fan-in QoS 0"),
        ("fanin_q1", "fanin", ["--pubs", str(pubs), "--subs", "1", "--qos", "1", "--inflight", "32",
                               "--duration", str(secs), *common], "fan-in QoS 1"),
        # Issue 20's QoS 1 scenario: 4 publishers -> 4 subscribers on 4
        # topics (a pair per topic), a window of 64, closed loop.
        ("p2p_q1", "p2p", ["--pubs", "4", "--qos", "1", "--inflight", "64", "--duration", str(secs), *common],
         "QoS 1, 4 -> 4 on 4 topics"),
        ("fanout_q0", "fanout", ["--pubs", "1", "--subs", str(subs), "--qos", "0", "--duration", str(secs), *common],
         "fan-out QoS 0"),
        ("latency_q1", "p2p", ["--pubs", "10", "--qos", "1", "--rate", str(lat_rate), "--inflight", "64",
                               "--duration", str(lat_secs), *common], "latency QoS 1"),
        ("latency_q0", "p2p", ["--pubs", "10", "--qos", "0", "--rate", str(lat_rate),
                               "--duration", str(max(lat_secs // 2, 3)), *common], "latency QoS 0"),
    ]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def listen_overflows():
    """The kernel's count of connections dropped because an accept queue
    was full (TcpExt ListenOverflows): each costs its client a SYN or ACK
    retransmission, a second or more."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for head, vals in zip(lines[0::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:]))).get("ListenOverflows")
    return None


def log(msg):
    print("[compare %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


CURRENT = {}


def on_term(signum, frame):
    """Stop the running shoal-bench (it stops its workers), then the
    running broker, then exit."""
    for key in ("proc", "broker"):
        proc = CURRENT.get(key)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.exit(128 + signum)


def run_bench(bench, broker, name, scenario, args, timeout):
    """Runs one shoal-bench; returns (result dict or None, rss samples)."""
    cmd = [bench, scenario, "--port", str(broker["port"]), "--client-prefix", "cmp-%s-" % name, *args]
    log("%s %s: %s" % (broker["name"], name, " ".join(cmd[1:])))
    rss = {"before_kib": rss_kib(broker["pid"])}
    overflows0 = listen_overflows()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CURRENT["proc"] = proc

    def pump_stderr():
        for line in proc.stderr:
            line = line.rstrip()
            if line.startswith("HOLD"):
                # Let the broker settle, then sample while the connections are held.
                time.sleep(1.0)
                rss["held_kib"] = rss_kib(broker["pid"])
            print("    %-9s %-10s %s" % (broker["name"], name, line), flush=True)

    t = threading.Thread(target=pump_stderr, daemon=True)
    t.start()
    # stdout is read here and stderr only by the thread (communicate()
    # would race it for the progress lines); a timer enforces the timeout.
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    out = proc.stdout.read()
    proc.wait()
    if not killer.is_alive():
        log("%s %s: killed after %ds" % (broker["name"], name, timeout))
    killer.cancel()
    t.join(timeout=5)
    rss["after_kib"] = rss_kib(broker["pid"])
    overflows1 = listen_overflows()
    if overflows0 is not None and overflows1 is not None:
        rss["listen_overflows"] = overflows1 - overflows0
    try:
        return json.loads(out.strip().splitlines()[-1]), rss
    except (ValueError, IndexError):
        log("%s %s: no JSON result (exit %s)" % (broker["name"], name, proc.returncode))
        return None, rss


STORM_USER, STORM_PASSWORD = "storm", "storm-password"


def login_storm(a, work, runs, quick):
    """Shoal only: the QoS 1 latency stream (10 pairs, open loop) on a node
    with a password file (the stream's clients are anonymous), once alone
    (storm_off) and once while --conns clients with passwords at the
    default PBKDF2 iterations all connect at once (storm_on), each on a
    fresh node. Issue 20: the stream's p99 must not move by more than 2x."""
    pwfile = os.path.join(work, "storm.passwd")
    r = subprocess.run([a.shoal, "passwd", pwfile, STORM_USER], input=STORM_PASSWORD + "\n", text=True,
                       capture_output=True, timeout=120)
    if r.returncode != 0:
        log("login storm: shoal passwd failed: %s" % r.stderr.strip())
        return
    br = peers_mod.Shoal(a.shoal)
    br.args += ["--password-file", pwfile, "--allow-anonymous", "true"]
    n, secs, rate = (100, 4, 2000) if quick else (1000, 20, LATENCY_RATE)
    stream = ["--pubs", "10", "--qos", "1", "--rate", str(rate), "--inflight", "64", "--duration", str(secs),
              "--size", str(SIZE), "--drain", "10"]
    storm = [a.bench, "conn", "--conns", str(n), "--pending", str(n), "--username", STORM_USER,
             "--password", STORM_PASSWORD, "--duration", "1", "--connect-timeout", str(secs + 20),
             "--setup-timeout", str(secs + 30), "--src", "127.0.0.2-127.0.0.20", "--quiet"]
    for name in ("storm_off", "storm_on"):
        proc, port = start_broker(br, work)
        if proc is None:
            runs[name]["shoal"] = {"result": None, "rss": {}, "skipped": port}
            log("login storm %s: skipped, %s" % (name, port))
            continue
        storm_proc = None
        if name == "storm_on":
            def fire():
                time.sleep(1.0)  # the stream runs first
                p = subprocess.Popen(storm + ["--port", str(port), "--client-prefix", "cmp-storm-"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                CURRENT["storm"] = p
                holder.append(p)
            holder = []
            threading.Thread(target=fire, daemon=True).start()
        broker = {"name": "shoal", "pid": proc.pid, "port": port}
        result, rss = run_bench(a.bench, broker, name, "p2p", stream, timeout=secs + 300)
        storm_res = None
        if name == "storm_on":
            for _ in range(50):
                if holder:
                    break
                time.sleep(0.1)
            if holder:
                storm_proc = holder[0]
                try:
                    out, _ = storm_proc.communicate(timeout=secs + 120)
                    storm_res = json.loads(out.strip().splitlines()[-1])
                except (subprocess.TimeoutExpired, ValueError, IndexError):
                    storm_proc.kill()
                    storm_proc.wait()
                CURRENT.pop("storm", None)
        runs[name]["shoal"] = {"result": result, "rss": rss, "storm": storm_res}
        if result:
            log("shoal %s: p50 %d µs, p99 %d µs, lost %d%s" % (
                name, result["latency_us"]["p50"], result["latency_us"]["p99"], result["counts"]["lost"],
                (", storm: %d of %d connected, %d refused" % (storm_res["counts"]["connected"], n,
                                                              storm_res["counts"]["refused"]) if storm_res else "")))
        stop_broker(proc, "shoal")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(br, proc, port, work, timeout):
    """Until the broker prints its ready line (when it has one) and takes a
    TCP connection on port; False if it exits or the timeout passes."""
    out = os.path.join(work, "%s.out" % br.name)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        printed = True
        if br.ready_line:
            with open(out, errors="replace") as f:
                printed = any(line.startswith(br.ready_line) for line in f)
        if printed:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                pass
        time.sleep(0.1)
    return False


def stop_broker(proc, name):
    """TERM the broker's PID, KILL it after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log("%s pid %d did not stop on TERM in 15 s: KILL" % (name, proc.pid))
            proc.kill()
            proc.wait()
    CURRENT.pop("broker", None)


def log_tail(work, name, n=5):
    try:
        with open(os.path.join(work, "%s.log" % name), errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# ---- the table ----

def metric_rows(runs, idle_n):
    """(label, unit, higher_is_better, fn(run_dict_for_broker) -> number or None)."""
    def res(name, *path):
        def get(b):
            r = runs.get(name, {}).get(b, {}).get("result")
            for p in path:
                if r is None:
                    return None
                r = r.get(p)
            return r
        return get

    def mem_per_conn(b):
        r = runs.get("idle", {}).get(b, {})
        rss, result = r.get("rss", {}), r.get("result")
        if not result or "held_kib" not in rss or not result["counts"]["connected"]:
            return None
        return (rss["held_kib"] - rss["before_kib"]) * 1024.0 / result["counts"]["connected"]

    rows = [
        ("Idle connections held", "", True, res("idle", "counts", "connected")),
        ("Memory per idle connection (RSS delta)", "bytes", False, mem_per_conn),
        ("Connect rate, 256 in flight (%d connections)" % idle_n, "conn/s", True, res("idle", "rates", "connects_per_s")),
        ("Connects dropped by a full accept queue", "conns", False,
         lambda b: runs.get("idle", {}).get(b, {}).get("rss", {}).get("listen_overflows")),
        ("Connect rate, 50 in flight (%d connections)" % idle_n, "conn/s", True,
         res("conn50", "rates", "connects_per_s")),
        ("Connects dropped by a full accept queue, 50 in flight", "conns", False,
         lambda b: runs.get("conn50", {}).get(b, {}).get("rss", {}).get("listen_overflows")),
        ("Fan-in QoS 0, received", "msg/s", True, res("fanin_q0", "rates", "received_per_s")),
        ("Fan-in QoS 0, accepted from publishers", "msg/s", True, res("fanin_q0", "rates", "sent_per_s")),
        ("Fan-in QoS 0, not delivered", "msgs", False, res("fanin_q0", "counts", "lost")),
        ("Fan-in QoS 1, received", "msg/s", True, res("fanin_q1", "rates", "received_per_s")),
        ("Fan-in QoS 1, lost", "msgs", False, res("fanin_q1", "counts", "lost")),
        ("QoS 1 4 -> 4 (window 64), received", "msg/s", True, res("p2p_q1", "rates", "received_per_s")),
        ("QoS 1 4 -> 4, lost", "msgs", False, res("p2p_q1", "counts", "lost")),
        ("Fan-out QoS 0, deliveries", "msg/s", True, res("fanout_q0", "rates", "received_per_s")),
        ("Fan-out QoS 0, not delivered", "msgs", False, res("fanout_q0", "counts", "lost")),
    ]
    for name, what in (("storm_off", "no login storm"), ("storm_on", "during a login storm")):
        for p in ("p50", "p99"):
            rows.append(("QoS 1 stream with a password file, %s, %s" % (what, p), "µs", False,
                         res(name, "latency_us", p)))
    rows.append(("Login storm: clients connected", "conns", True,
                 lambda b: ((runs.get("storm_on", {}).get(b, {}).get("storm") or {}).get("counts") or {})
                 .get("connected")))
    rows.append(("Login storm: clients refused (0x89 busy or timed out)", "conns", False,
                 lambda b: ((runs.get("storm_on", {}).get(b, {}).get("storm") or {}).get("counts") or {})
                 .get("refused")))
    for q in ("q1", "q0"):
        for p in ("p50", "p90", "p99", "p99_9", "max"):
            rows.append(("Latency QoS %s %s" % (q[1], p.replace("_", ".")), "µs", False,
                         res("latency_" + q, "latency_us", p)))
        rows.append(("Latency QoS %s, generator lateness p99" % q[1], "µs", False,
                     res("latency_" + q, "send_delay_us", "p99")))
    return rows


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float) and v >= 100 or isinstance(v, int):
        return "{:,.0f}".format(v)
    return "{:,.1f}".format(v)


def best_peer(values, higher):
    """(name, value) of the best peer, or (None, None) when none has a number."""
    nums = [(n, v) for n, v in values if isinstance(v, (int, float))]
    if not nums:
        return None, None
    return (max if higher else min)(nums, key=lambda nv: nv[1])


def markdown(meta, runs, brokers, idle_n, problems):
    names = [b["name"] for b in brokers]
    peers = names[1:]
    title = "Shoal vs Mosquitto" if peers == ["mosquitto"] else "Shoal vs %s" % ", ".join(peers)
    lines = ["# %s — %s" % (title, meta["date"]), ""]
    lines.append("Machine: %s, %d cores, %s. Mode: %s. Payload %d B. Latency runs: %s msg/s in total, "
                 "10 publisher/subscriber pairs, measured from each message's intended send time. "
                 "One broker at a time, in the order of the columns." %
                 (meta["machine"]["cpu"], meta["machine"]["cores"], meta["machine"]["kernel"],
                  "quick" if meta["quick"] else "full", SIZE, meta["latency_rate"]))
    lines.append("")
    ratio_head = "shoal/%s" % peers[0] if len(peers) == 1 else "shoal/best peer"
    lines.append("| metric | unit | %s | %s |" % (" | ".join(names), ratio_head))
    lines.append("|---|---|%s---:|" % ("---:|" * len(names)))
    for label, unit, higher, fn in metric_rows(runs, idle_n):
        vals = [(n, fn(n)) for n in names]
        bn, bv = best_peer(vals[1:], higher)
        va = vals[0][1]
        ratio = "—"
        if isinstance(va, (int, float)) and isinstance(bv, (int, float)) and bv:
            ratio = "%.2f×" % (va / bv)
            if len(peers) > 1:
                ratio += " (%s)" % bn
        lines.append("| %s | %s | %s | %s |" % (label, unit, " | ".join(fmt(v) for _, v in vals), ratio))
    lines.append("")
    lines.append("Ratios above 1 are better for rates, worse for memory, losses and latency. "
                 "The best peer is the one with the best figure in that row.")
    lines.append("")
    lines.append("Brokers: %s" % "; ".join("%s = `%s`" % (x["name"], x["version"]) for x in brokers))
    lines.append("")
    lines.append("Limits given to every broker: %s." % ", ".join(
        "%s %s" % (k, "{:,}".format(v) if isinstance(v, int) else v) for k, v in meta["limits"].items()))
    for x in brokers:
        lines.append("- %s: %s" % (x["name"], x["settings"]))
        for nr in x.get("not_raised", []):
            lines.append("  - not raised: %s" % nr)
    for name, why in meta.get("skipped", []):
        lines.append("- %s: skipped, %s" % (name, why))
    lines.append("- Every bench and broker shares this machine's cores; the bench is one process.")
    lines.append("- Fan-in/fan-out publishers are closed loop (as fast as the window and socket allow); "
                 "'received' is deliveries divided by the time deliveries took.")
    lines.append("- Memory per connection is the broker's RSS growth while the idle connections are held, "
                 "divided by their number.")
    lines.append("- The bench keeps up to 256 connects in flight (50 in the '50 in flight' row). A connect dropped by a full accept queue "
                 "(the kernel's ListenOverflows while that run lasted) waits a second or more for its "
                 "retransmission, which lowers that run's connect rate.")
    if problems:
        lines.append("")
        lines.append("**Sanity check failures:**")
        lines.extend("- %s" % p for p in problems)
    lines.append("")
    return "\n".join(lines)


# ---- checks ----

def sanity(runs, brokers, scen, idle_n):
    problems = []
    for name, _, _, _ in scen:
        for br in brokers:
            entry = runs.get(name, {}).get(br["name"], {})
            r = entry.get("result")
            where = "%s/%s" % (br["name"], name)
            if entry.get("skipped"):
                problems.append("%s: not run (%s)" % (where, entry["skipped"]))
                continue
            if r is None:
                problems.append("%s: no parseable JSON result" % where)
                continue
            c = r["counts"]
            if r["status"] != "ok":
                problems.append("%s: status %s" % (where, r["status"]))
            if name in ("idle", "conn50") and c["connected"] != idle_n:
                problems.append("%s: %d of %d idle connections" % (where, c["connected"], idle_n))
            if name not in ("idle", "conn50") and not r["rates"]["received_per_s"] > 0:
                problems.append("%s: nothing received" % where)
            if r["config"]["qos"] > 0 and c["lost"]:
                problems.append("%s: %d QoS %d messages lost" % (where, c["lost"], r["config"]["qos"]))
            if name.startswith("latency") and not r["latency_us"]["count"]:
                problems.append("%s: no latency samples" % where)
    return problems


# ---- plots ----

def plots(out, runs, brokers, idle_n):
    """throughput.png and latency_cdf.png (all scenarios together), and one
    PNG per scenario: idle.png (memory per connection and connect rate),
    fanin_q0.png, fanin_q1.png, fanout_q0.png, latency_q1.png, latency_q0.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b["name"] for b in brokers]
    colors = {n: "C%d" % i for i, n in enumerate(names)}

    def rate(n, b):
        r = runs.get(n, {}).get(b, {}).get("result")
        return r["rates"]["received_per_s"] if r else 0

    def bars(ax, labels, vals, fmt_s="{:,.0f}"):
        b = ax.bar(labels, vals, color=[colors[x] for x in labels])
        ax.bar_label(b, labels=[fmt_s.format(v) if v else "—" for v in vals], fontsize=8)

    def save(fig, fname):
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=110)
        plt.close(fig)

    tput = [("fanin_q0", "fan-in QoS 0"), ("fanin_q1", "fan-in QoS 1"), ("p2p_q1", "QoS 1 4 -> 4"),
            ("fanout_q0", "fan-out QoS 0")]
    fig, ax = plt.subplots(figsize=(max(8, 2 * len(names) + 4), 4.5))
    width = 0.8 / len(names)
    for i, b in enumerate(names):
        vals = [rate(n, b) for n, _ in tput]
        xs = [k + (i - (len(names) - 1) / 2.0) * width for k in range(len(tput))]
        bs = ax.bar(xs, vals, width, label=b, color=colors[b])
        ax.bar_label(bs, labels=["{:,.0f}".format(v) for v in vals], fontsize=7)
    ax.set_xticks(range(len(tput)), [label for _, label in tput])
    ax.set_ylabel("messages delivered per second")
    ax.set_title("Throughput, %d B payloads" % SIZE)
    ax.legend()
    save(fig, "throughput.png")

    for n, label in tput:
        fig, ax = plt.subplots(figsize=(7, 4))
        bars(ax, names, [rate(n, b) for b in names])
        ax.set_ylabel("messages delivered per second")
        ax.set_title("%s, %d B payloads (higher is better)" % (label, SIZE))
        save(fig, "%s.png" % n)

    rows = {label: fn for label, _, _, fn in metric_rows(runs, idle_n)}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    bars(a1, names, [rows["Memory per idle connection (RSS delta)"](b) or 0 for b in names])
    a1.set_ylabel("bytes")
    a1.set_title("Memory per idle connection (lower is better)")
    bars(a2, names, [rows["Connect rate, 256 in flight (%d connections)" % idle_n](b) or 0 for b in names])
    a2.set_ylabel("connections per second")
    a2.set_title("Connect rate, %d connections, 256 in flight (higher is better)" % idle_n)
    save(fig, "idle.png")

    def cdf(ax, n, b, style="-", label=None):
        r = runs.get(n, {}).get(b, {}).get("result")
        if not r or not r["latency_us"]["count"]:
            return
        pts = [(p, v) for p, v in r["latency_cdf"] if p < 100]
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in pts]
        ax.plot(xs, [v for _, v in pts], style, color=colors[b], label=label or b)

    def cdf_axes(ax, title):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [1, 2, 10, 100, 1000, 10000, 100000]
        ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (µs)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for b in names:
        for n, style in (("latency_q1", "-"), ("latency_q0", "--")):
            cdf(ax, n, b, style, "%s QoS %s" % (b, n[-1]))
    cdf_axes(ax, "Latency at a fixed rate, from the intended send time")
    save(fig, "latency_cdf.png")
    for n in ("latency_q1", "latency_q0"):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for b in names:
            cdf(ax, n, b)
        cdf_axes(ax, "QoS %s latency at a fixed rate, from the intended send time" % n[-1])
        save(fig, "%s.png" % n)


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}


def start_broker(br, work):
    """Starts br on a free port; returns (proc, port) or (None, why)."""
    port = free_port()
    try:
        proc = br.start(work, port)
    except OSError as e:
        return None, "could not start: %s" % e
    CURRENT["broker"] = proc
    if not wait_ready(br, proc, port, work, 120):
        why = "did not start (exit %s): %s" % (proc.poll(), log_tail(work, br.name))
        stop_broker(proc, br.name)
        return None, why
    return proc, port


def run_broker(a, br, scen, runs, work, step, total):
    """Runs every scenario against br, each on a broker started for it and
    stopped by PID after it (so a broker that a scenario overwhelms is
    still measured in the next). Returns its table entry, or None when it
    never started."""
    entry = {"name": br.name, "version": br.version, "settings": None, "not_raised": list(br.not_raised)}
    started = False
    for name, scenario, args, what in scen:
        step[0] += 1
        proc, port = start_broker(br, work)
        if proc is None:
            runs[name][br.name] = {"result": None, "rss": {}, "skipped": port}
            log("[%d/%d] %s %s: skipped, %s" % (step[0], total, br.name, name, port))
            continue
        started = True
        entry["settings"] = br.settings()
        log("[%d/%d] %s %s (%s), pid %d on 127.0.0.1:%d" % (step[0], total, br.name, name, what, proc.pid, port))
        broker = {"name": br.name, "pid": proc.pid, "port": port}
        secs = float(args[args.index("--duration") + 1])
        # shoal-bench bounds itself (setup, run, 10x drain); this is a backstop.
        result, rss = run_bench(a.bench, broker, name, scenario, args, timeout=int(secs) + 300)
        runs[name][br.name] = {"result": result, "rss": rss}
        if result:
            log("%s %s: received %.0f msg/s, lost %d, p99 %d µs, connects %.0f/s" % (
                br.name, name, result["rates"]["received_per_s"], result["counts"]["lost"],
                result["latency_us"]["p99"], result["rates"]["connects_per_s"]))
        if proc.poll() is not None:
            why = "died during %s (exit %s): %s" % (name, proc.returncode, log_tail(work, br.name, 3))
            log("%s pid %d %s" % (br.name, proc.pid, why))
            entry.setdefault("died", []).append(why)
        stop_broker(proc, br.name)
    return entry if started else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    ap.add_argument("--peers", default="mosquitto", help="comma-separated: " + ",".join(peers_mod.PEER_NAMES))
    ap.add_argument("--duration", type=int, default=None, help="seconds per throughput run (full mode) [15]")
    ap.add_argument("--latency-duration", type=int, default=None, help="seconds of the QoS 1 latency run [60]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-storm", action="store_true", help="skip the login storm (Shoal only)")
    ap.add_argument("--storm-only", action="store_true", help="only the login storm (Shoal only)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    wanted = [p.strip() for p in a.peers.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in peers_mod.PEER_NAMES]
    if unknown or not wanted:
        log("unknown peer(s) %s; choose from %s" % (",".join(unknown) or "(none)", ",".join(peers_mod.PEER_NAMES)))
        return 2
    os.makedirs(a.out, exist_ok=True)
    scen = scenarios(a.quick, a.duration, a.latency_duration)
    idle_n = int(scen[0][2][1])

    candidates = [peers_mod.Shoal(a.shoal)] + [peers_mod.make(p, a.mosquitto) for p in dict.fromkeys(wanted)]
    brokers, skipped = [], []
    for br in candidates:
        try:
            br.install()
            brokers.append(br)
        except peers_mod.Unavailable as e:
            log("skipping %s: %s" % (br.name, e))
            skipped.append((br.name, str(e)))
    for br in brokers:
        for nr in br.not_raised:
            log("%s: limit not raised: %s" % (br.name, nr))

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": a.quick,
            "machine": machine(), "latency_rate": 2000 if a.quick else LATENCY_RATE,
            "limits": peers_mod.LIMITS, "skipped": skipped}
    if a.storm_only:
        scen, brokers = [], brokers[:1]
    runs = {name: {} for name, _, _, _ in scen}
    runs["storm_off"], runs["storm_on"] = {}, {}
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="shoal-compare-brokers.")
    entries = []
    step = [0]
    total = len(brokers) * len(scen)
    try:
        for br in (brokers if scen else []):
            entry = run_broker(a, br, scen, runs, work, step, total)
            if entry is None:
                skipped.append((br.name, "did not start"))
                continue
            entries.append(entry)
        if not a.no_storm and brokers and brokers[0].name == "shoal":
            login_storm(a, work, runs, a.quick)
            if a.storm_only:
                entries.append({"name": "shoal", "version": brokers[0].version, "settings": None,
                                "not_raised": []})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["brokers"] = entries
    if not entries or entries[0]["name"] != "shoal":
        log("shoal did not start; nothing to compare")
        return 1
    problems = sanity(runs, entries, scen, idle_n)
    for name in ("storm_off", "storm_on"):
        r = runs[name].get("shoal", {}).get("result")
        if not a.no_storm and (r is None or r["counts"]["lost"] or not r["latency_us"]["count"]):
            problems.append("shoal/%s: %s" % (name, "no result" if r is None else "lost %d, %d latency samples" % (
                r["counts"]["lost"], r["latency_us"]["count"])))
    for e in entries:
        for why in e.get("died", []):
            problems.append("%s: %s" % (e["name"], why))
    # Shoal's and Mosquitto's numbers are judged; a peer's problems are reported.
    fatal = [p for p in problems if p.split("/")[0].split(":")[0] in ("shoal", "mosquitto")]
    fatal += ["%s: skipped" % n for n, _ in skipped if n in ("shoal", "mosquitto")]
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "problems": problems}, f, indent=1)
    md = markdown(meta, runs, entries, idle_n, problems)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    plots(a.out, runs, entries, idle_n)
    print()
    print(md)
    log("done in %.0fs; results in %s" % (time.time() - t0, a.out))
    if fatal:
        log("NOT SANE: %d problem(s)" % len(fatal))
        return 1
    if problems:
        log("%d peer problem(s), listed under the table (reported, not judged)" % len(problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
