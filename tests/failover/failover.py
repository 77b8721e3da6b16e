# SPDX-License-Identifier: Apache-2.0
"""The failover suite's runner (tests/failover/run is its front end).

  run                          short scenarios on a local cluster it starts (CI)
  run --long [--scenario N]    longer, heavier ones; report in tests/failover/results/
  run --target HOST:PORT       the workload, recorder and checker against any
                               deployment; faults are left to the user
"""
import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
from cluster import ADMIN_TOKEN, ROOT, LocalCluster  # noqa: E402
from scenarios import SCENARIOS, TARGET, Size, run_scenario  # noqa: E402
from workload import Recorder, Sampler, Target  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(msg, flush=True)


class _AdminNode:
    def __init__(self, i, url):
        self.name, self.port, self.http_url = "node-%d" % i, None, url.rstrip("/")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="tests/failover/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build/node/shoal"), help="the shoal binary")
    ap.add_argument("--long", action="store_true", help="longer, heavier scenarios; report in results/")
    ap.add_argument("--scenario", action="append", default=[], metavar="NAME",
                    help="run only these (repeatable): " + ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    ap.add_argument("--target", metavar="HOST:PORT", help="run the client side against this deployment")
    ap.add_argument("--admin", metavar="URL,...", default="",
                    help="with --target: each node's HTTP URL, for the admin API samples (invariant 3)")
    ap.add_argument("--admin-token", default=os.environ.get("SHOAL_ADMIN_TOKEN"),
                    help="with --admin: the bearer token (default $SHOAL_ADMIN_TOKEN)")
    ap.add_argument("--out", help="where reports and histories go (default: results/DATE with --long, "
                                  "else a temporary directory kept only on failure)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = ap.parse_args(argv)
    names = {s.name for s in SCENARIOS}
    for n in a.scenario:
        if n not in names:
            ap.error("unknown scenario %r (one of: %s)" % (n, ", ".join(sorted(names))))
    if a.target and a.scenario:
        ap.error("--target runs the workload only; its faults are yours (no --scenario)")
    return a


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    if a.list:
        for s in SCENARIOS:
            log("%-18s (%d) %s; expected to fail today: %s%s" % (s.name, s.number, s.title,
                                                                 ", ".join(sorted(s.expected)) or "nothing",
                                                                 "" if s.default else "; only with --scenario"))
        return 0
    size = Size(a.long)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    out = a.out or (os.path.join(HERE, "results", stamp) if a.long else tempfile.mkdtemp(prefix="shoal-failover-out."))
    os.makedirs(out, exist_ok=True)
    run_id = "%x" % (int(time.time()) & 0xFFFFFF)
    rows, failed, reports = [], False, []
    cluster = None
    try:
        if a.target:
            host, _, port = a.target.rpartition(":")
            nodes = [_AdminNode(i + 1, u) for i, u in enumerate(x for x in a.admin.split(",") if x)]
            target = Target(host or "127.0.0.1", int(port), nodes, a.admin_token)
            plan = [TARGET]
        else:
            if not os.access(a.shoal, os.X_OK):
                log("no shoal binary at %s (build it, or pass --shoal)" % a.shoal)
                return 2
            plan = [s for s in SCENARIOS if (s.name in a.scenario if a.scenario else s.default)]
            # One local cluster per Kafka size: the 3-broker one last.
            plan.sort(key=lambda s: s.brokers)
        for sc in plan:
            if not a.target and (cluster is None or cluster.kafka_brokers != sc.brokers):
                if cluster:
                    failed |= bool(cluster.stop())
                    cluster = None
                cluster = LocalCluster(a.shoal, nodes=3, kafka_brokers=sc.brokers, log=log)
                cluster.start()
                target = Target("127.0.0.1", cluster.port, cluster.nodes, ADMIN_TOKEN)
            seed = a.seed * 1000 + sc.number
            random.seed(seed)
            prefix = "fo%s-%s" % (run_id, sc.name)
            log("== scenario %s: %s (seed %d)" % (sc.name, sc.title, seed))
            hist = os.path.join(out, "%s.history.jsonl" % sc.name)
            rec = Recorder(hist)
            sampler = Sampler(rec, target, prefix) if target.nodes else None
            if sampler:
                sampler.start()
            t0 = time.time()
            if cluster:
                _heal(cluster)
            try:
                ctx = run_scenario(sc, rec, target, cluster, sc.size(size), seed, prefix, log)
            finally:
                if sampler:
                    sampler.stop()
            rec.close()
            if ctx.skipped:
                rows.append((sc.name, checker.check([]), "skip"))
                reports.append((sc, checker.check([]), "skip", [], "### %s\n\nskipped: %s" % (sc.name, ctx.skipped)))
                continue
            result = checker.check(rec.events)
            v, problems = checker.verdict(result, sc.expected)
            if ctx.errors:
                v, problems = "FAIL", problems + ["harness: " + e for e in ctx.errors]
            failed |= v == "FAIL"
            if cluster and (v == "FAIL" or os.environ.get("SHOAL_FAILOVER_KEEP")):
                cluster.failed = True  # keep the node logs (SHOAL_FAILOVER_KEEP=1: always)
            rows.append((sc.name, result, v))
            det = checker.details(sc.name, result, sc.expected)
            reports.append((sc, result, v, problems, det))
            log(det)
            for p in problems:
                log("  PROBLEM: " + p)
            log("  %s in %.0fs, history %s (crc %08x)" % (v, time.time() - t0, hist, _crc(hist)))
    except BaseException:
        if cluster:
            cluster.failed = True  # keep its logs
        raise
    finally:
        if cluster:
            problems = cluster.stop()
            if problems:
                failed = True
    log("")
    log(checker.table(rows))
    _write_report(out, a, size, rows, reports)
    log("\nreport: %s" % os.path.join(out, "report.md"))
    if not a.long and not a.out and not failed:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0


def _heal(cluster):
    """Before a scenario: every node running and ready (a previous scenario
    may have left one restarting)."""
    for n in cluster.nodes:
        if n.proc is None or n.proc.poll() is not None:
            cluster.start_node(n)
    end = time.time() + 60
    while not all(cluster.node_ready(n) for n in cluster.nodes):
        if time.time() > end:
            raise RuntimeError("nodes not ready before the scenario")
        time.sleep(0.2)
    time.sleep(2.5)  # HAProxy marks a node up after one good check (inter 1s)


def _crc(path):
    with open(path, "rb") as f:
        return zlib.crc32(f.read())


def _write_report(out, a, size, rows, reports):
    lines = ["# Failover run %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "",
             "Command: `tests/failover/run %s`" % " ".join(sys.argv[1:]), "",
             "Mode: %s; %d messages per data publisher at %g/s; seed %d." % (
                 "long" if a.long else ("target " + a.target if a.target else "short"), size.count, size.rate,
                 a.seed), "", checker.table(rows), ""]
    for sc, result, v, problems, det in reports:
        lines += [det, ""] + ["- PROBLEM: " + p for p in problems] + [""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({name: {"verdict": v, **r} for name, r, v in rows}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
