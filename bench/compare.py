#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs shoal-bench scenarios against brokers that bench/compare started,
then writes results.json, results.md (a table with a ratio column) and PNG
plots into --out. Exits 1 when a number is not sane."""
import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

SIZE = 64
LATENCY_RATE = 10000


def scenarios(quick):
    """(name, scenario, shoal-bench args, what it measures). Quick keeps
    every scenario but with small counts and seconds."""
    if quick:
        idle, hold, pubs, subs, secs, lat_rate, lat_secs = 500, 2, 10, 20, 3, 2000, 4
    else:
        idle, hold, pubs, subs, secs, lat_rate, lat_secs = 10000, 15, 100, 100, 15, LATENCY_RATE, 60
    common = ["--size", str(SIZE), "--drain", "10"]
    src = ["--src", "127.0.0.2-127.0.0.20"]
    return [
        ("idle", "conn", ["--conns", str(idle), "--duration", str(hold), *src], "idle connections"),
        ("fanin_q0", "fanin", ["--pubs", str(pubs), "--subs", "1", "--qos", "0", "--duration", str(secs), *common],
         "fan-in QoS 0"),
        ("fanin_q1", "fanin", ["--pubs", str(pubs), "--subs", "1", "--qos", "1", "--inflight", "32",
                               "--duration", str(secs), *common], "fan-in QoS 1"),
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
    """Stop the running shoal-bench (it stops its workers), then exit."""
    proc = CURRENT.get("proc")
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


def parse_broker(spec):
    name, pid, port, version = spec.split(":", 3)
    return {"name": name, "pid": int(pid), "port": int(port), "version": version.strip()}


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
        ("Connect rate (%d connections)" % idle_n, "conn/s", True, res("idle", "rates", "connects_per_s")),
        ("Connects dropped by a full accept queue", "conns", False,
         lambda b: runs.get("idle", {}).get(b, {}).get("rss", {}).get("listen_overflows")),
        ("Fan-in QoS 0, received", "msg/s", True, res("fanin_q0", "rates", "received_per_s")),
        ("Fan-in QoS 0, accepted from publishers", "msg/s", True, res("fanin_q0", "rates", "sent_per_s")),
        ("Fan-in QoS 0, not delivered", "msgs", False, res("fanin_q0", "counts", "lost")),
        ("Fan-in QoS 1, received", "msg/s", True, res("fanin_q1", "rates", "received_per_s")),
        ("Fan-in QoS 1, lost", "msgs", False, res("fanin_q1", "counts", "lost")),
        ("Fan-out QoS 0, deliveries", "msg/s", True, res("fanout_q0", "rates", "received_per_s")),
        ("Fan-out QoS 0, not delivered", "msgs", False, res("fanout_q0", "counts", "lost")),
    ]
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


def markdown(meta, runs, brokers, idle_n, problems):
    a, b = brokers[0]["name"], brokers[1]["name"]
    lines = ["# Shoal vs Mosquitto — %s" % meta["date"], ""]
    lines.append("Machine: %s, %d cores, %s. Mode: %s. Payload %d B. Latency runs: %s msg/s in total, "
                 "10 publisher/subscriber pairs, measured from each message's intended send time." %
                 (meta["machine"]["cpu"], meta["machine"]["cores"], meta["machine"]["kernel"],
                  "quick" if meta["quick"] else "full", SIZE, meta["latency_rate"]))
    lines.append("")
    lines.append("| metric | unit | %s | %s | %s/%s |" % (a, b, a, b))
    lines.append("|---|---|---:|---:|---:|")
    for label, unit, higher, fn in metric_rows(runs, idle_n):
        va, vb = fn(a), fn(b)
        ratio = "—"
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and vb:
            ratio = "%.2f×" % (va / vb)
        lines.append("| %s | %s | %s | %s | %s |" % (label, unit, fmt(va), fmt(vb), ratio))
    lines.append("")
    lines.append("Ratios above 1 are better for rates, worse for memory, losses and latency.")
    lines.append("")
    lines.append("Brokers: %s" % "; ".join("%s = `%s`" % (x["name"], x["version"]) for x in brokers))
    lines.append("")
    lines.append("- Shoal: `%s`" % meta["shoal_args"])
    lines.append("- Mosquitto config: `%s`" % "; ".join(meta["mosquitto_conf"]))
    lines.append("- Every bench and both brokers share this machine's cores; the bench is one process.")
    lines.append("- Fan-in/fan-out publishers are closed loop (as fast as the window and socket allow); "
                 "'received' is deliveries divided by the time deliveries took.")
    lines.append("- Memory per connection is the broker's RSS growth while the idle connections are held, "
                 "divided by their number.")
    lines.append("- The bench keeps up to 256 connects in flight. A connect dropped by a full accept queue "
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
            r = runs.get(name, {}).get(br["name"], {}).get("result")
            where = "%s/%s" % (br["name"], name)
            if r is None:
                problems.append("%s: no parseable JSON result" % where)
                continue
            c = r["counts"]
            if r["status"] != "ok":
                problems.append("%s: status %s" % (where, r["status"]))
            if name == "idle" and c["connected"] != idle_n:
                problems.append("%s: %d of %d idle connections" % (where, c["connected"], idle_n))
            if name != "idle" and not r["rates"]["received_per_s"] > 0:
                problems.append("%s: nothing received" % where)
            if r["config"]["qos"] > 0 and c["lost"]:
                problems.append("%s: %d QoS %d messages lost" % (where, c["lost"], r["config"]["qos"]))
            if name.startswith("latency") and not r["latency_us"]["count"]:
                problems.append("%s: no latency samples" % where)
    return problems


# ---- plots ----

def plots(out, runs, brokers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [("fanin_q0", "fan-in QoS 0"), ("fanin_q1", "fan-in QoS 1"), ("fanout_q0", "fan-out QoS 0")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.38
    for i, br in enumerate(brokers):
        vals = []
        for n, _ in names:
            r = runs.get(n, {}).get(br["name"], {}).get("result")
            vals.append(r["rates"]["received_per_s"] if r else 0)
        xs = [k + (i - 0.5) * width for k in range(len(names))]
        bars = ax.bar(xs, vals, width, label=br["name"])
        ax.bar_label(bars, labels=["{:,.0f}".format(v) for v in vals], fontsize=8)
    ax.set_xticks(range(len(names)), [label for _, label in names])
    ax.set_ylabel("messages delivered per second")
    ax.set_title("Throughput, %d B payloads" % SIZE)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = {"latency_q1": "-", "latency_q0": "--"}
    for br in brokers:
        for n, style in styles.items():
            r = runs.get(n, {}).get(br["name"], {}).get("result")
            if not r or not r["latency_us"]["count"]:
                continue
            pts = [(p, v) for p, v in r["latency_cdf"] if p < 100]
            xs = [1.0 / (1.0 - p / 100.0) for p, _ in pts]
            ax.plot(xs, [v for _, v in pts], style, label="%s QoS %s" % (br["name"], n[-1]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title("Latency at a fixed rate, from the intended send time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency_cdf.png"), dpi=110)
    plt.close(fig)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--broker", action="append", required=True, help="name:pid:port:version")
    ap.add_argument("--shoal-args", default="")
    ap.add_argument("--mosquitto-conf", default=None)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    brokers = [parse_broker(s) for s in a.broker]
    os.makedirs(a.out, exist_ok=True)
    scen = scenarios(a.quick)
    idle_n = int(scen[0][2][1])
    conf = []
    if a.mosquitto_conf:
        with open(a.mosquitto_conf) as f:
            conf = [line.strip() for line in f if line.strip()]
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": a.quick,
            "machine": machine(), "latency_rate": 2000 if a.quick else LATENCY_RATE,
            "brokers": brokers, "shoal_args": a.shoal_args, "mosquitto_conf": conf}
    runs = {}
    t0 = time.time()
    for name, scenario, args, what in scen:
        runs[name] = {}
        for br in brokers:
            secs = float(args[args.index("--duration") + 1])
            # shoal-bench bounds itself (setup, run, 10x drain); this is a backstop.
            result, rss = run_bench(a.bench, br, name, scenario, args, timeout=int(secs) + 300)
            runs[name][br["name"]] = {"result": result, "rss": rss}
            if result:
                log("%s %s: received %.0f msg/s, lost %d, p99 %d µs, connects %.0f/s" % (
                    br["name"], name, result["rates"]["received_per_s"], result["counts"]["lost"],
                    result["latency_us"]["p99"], result["rates"]["connects_per_s"]))
    problems = sanity(runs, brokers, scen, idle_n)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "problems": problems}, f, indent=1)
    md = markdown(meta, runs, brokers, idle_n, problems)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    plots(a.out, runs, brokers)
    print()
    print(md)
    log("done in %.0fs; results in %s" % (time.time() - t0, a.out))
    if problems:
        log("NOT SANE: %d problem(s)" % len(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
