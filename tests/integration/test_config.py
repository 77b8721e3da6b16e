# SPDX-License-Identifier: Apache-2.0
"""Command line, environment and config file; signals."""
import json
import os
import signal
import socket
import subprocess

import pytest

import mqttraw as R
from conftest import SHOAL_BIN
from pahoclient import Client, uid

FLAGS = ["--workers", "--max-keepalive", "--max-packet-size", "--max-inflight", "--max-queued",
         "--max-topic-alias", "--receive-maximum", "--max-qos", "--retain-available", "--wildcard-subscriptions",
         "--subscription-identifiers", "--shared-subscriptions", "--shared-strategy", "--connect-timeout",
         "--sys-interval", "--max-connections", "--max-session-expiry", "--max-output-buffer", "--config",
         "--port", "--bind", "--log-level", "--log-format"]


def run(*args, env=None, timeout=20):
    return subprocess.run([SHOAL_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def assert_start_failed_clean(r):
    """Exit 1 with event=start_failed, and what the start opened is freed:
    an ASan build lists no leak (and no memory error)."""
    assert "READY" not in r.stdout, r.stdout
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "event=start_failed" in r.stderr, r.stderr[-3000:]
    assert "ERROR: LeakSanitizer" not in r.stderr, r.stderr[-6000:]
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr[-6000:]


def test_a_start_that_fails_to_listen_frees_what_it_opened():
    """broker_start fails (the MQTT port is taken) after broker_open made the
    indexes, the backplane and the workers' loops."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("--bind", "127.0.0.1", "--port", str(port), "--http-port", "0", "--workers", "2", timeout=60)
    assert_start_failed_clean(r)


def test_a_start_that_fails_to_open_frees_what_it_opened(tmp_path):
    """broker_open fails (the TLS certificate is missing) after the indexes
    and the backplane are made, before the workers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tls_port = s.getsockname()[1]
    r = run("--bind", "127.0.0.1", "--port", "0", "--http-port", "0", "--tls-port", str(tls_port), "--tls-cert",
            str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "missing.key"), timeout=60)
    assert "missing.crt" in r.stderr, r.stderr[-3000:]
    assert_start_failed_clean(r)


def max_qos_of(node):
    with R.RawClient(node) as r:
        ack = r.connect(uid("cfg"))
        assert ack.rc == 0
        return ack.props.get(R.P_MAX_QOS, 2), ack


def test_help(node_factory):
    r = run("--help")
    assert r.returncode == 0
    for f in FLAGS:
        assert f in r.stdout, f
    assert "SHOAL_" in r.stdout
    assert run("-h").returncode == 0


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("shoal ")


@pytest.mark.parametrize("args,needle", [
    (["--port", "abc"], "port"),
    (["--port", "70000"], "port"),
    (["--max-qos", "7"], "max-qos"),
    (["--max-qos", "-1"], "max-qos"),
    (["--no-such-flag", "1"], "no-such-flag"),
    (["--retain-available", "maybe"], "retain-available"),
    (["--workers"], "workers"),
    (["--log-level", "loud"], "log-level"),
    (["--max-packet-size", "10"], "max-packet-size"),
    (["positional"], "positional"),
    (["--config", "/nonexistent/shoal.conf"], "/nonexistent/shoal.conf"),
])
def test_invalid_values_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert "READY" not in r.stdout
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr  # a clear message, not a dump


@pytest.mark.parametrize("var,val", [("SHOAL_MAX_QOS", "9"), ("SHOAL_PORT", "x"), ("SHOAL_WORKERS", "")])
def test_invalid_env_exits_2(var, val):
    r = run(env={var: val})
    assert r.returncode == 2, r.stderr
    assert var in r.stderr


def test_env_max_qos(node_factory):
    n = node_factory(env={"SHOAL_MAX_QOS": "1"})
    q, _ = max_qos_of(n)
    assert q == 1


def test_env_bool_and_int(node_factory):
    n = node_factory(env={"SHOAL_RETAIN_AVAILABLE": "false", "SHOAL_RECEIVE_MAXIMUM": "17"})
    _, ack = max_qos_of(n)
    assert ack.props.get(R.P_RETAIN_AVAILABLE) == 0
    assert ack.props.get(R.P_RECEIVE_MAX) == 17


def test_config_file(node_factory, tmp_path):
    f = tmp_path / "shoal.conf"
    f.write_text("# a comment\n\nmax-qos 1\nreceive-maximum = 9\n  max-topic-alias   3  \n"
                 "shared-subscriptions false\n")
    n = node_factory("--config", str(f))
    q, ack = max_qos_of(n)
    assert q == 1
    assert ack.props.get(R.P_RECEIVE_MAX) == 9
    assert ack.props.get(R.P_TOPIC_ALIAS_MAX) == 3
    assert ack.props.get(R.P_SHARED_AVAILABLE) == 0


def test_config_file_from_env(node_factory, tmp_path):
    f = tmp_path / "shoal.conf"
    f.write_text("max-qos 0\n")
    n = node_factory(env={"SHOAL_CONFIG": str(f)})
    assert max_qos_of(n)[0] == 0


def test_config_file_errors(tmp_path):
    f = tmp_path / "bad.conf"
    f.write_text("max-qos 1\nno-such-key 3\n")
    r = run("--config", str(f))
    assert r.returncode == 2
    assert "no-such-key" in r.stderr and ":2" in r.stderr
    f.write_text("max-qos seven\n")
    r = run("--config", str(f))
    assert r.returncode == 2 and "max-qos" in r.stderr


def test_flag_beats_env(node_factory):
    n = node_factory("--max-qos", "1", env={"SHOAL_MAX_QOS": "0"})
    assert max_qos_of(n)[0] == 1


def test_env_beats_file(node_factory, tmp_path):
    f = tmp_path / "shoal.conf"
    f.write_text("max-qos 0\nreceive-maximum 5\n")
    n = node_factory("--config", str(f), env={"SHOAL_MAX_QOS": "1"})
    q, ack = max_qos_of(n)
    assert q == 1
    assert ack.props.get(R.P_RECEIVE_MAX) == 5


def test_flag_beats_file(node_factory, tmp_path):
    f = tmp_path / "shoal.conf"
    f.write_text("max-qos 0\n")
    n = node_factory("--config", str(f), "--max-qos", "1")
    assert max_qos_of(n)[0] == 1


def test_equals_form(node_factory):
    n = node_factory("--max-qos=1")
    assert max_qos_of(n)[0] == 1


def test_sigterm_disconnects_v5_clients_and_exits_0(node_factory):
    n = node_factory("--workers", "2")
    raws = [R.RawClient(n) for _ in range(4)]
    for r in raws:
        assert r.connect(uid("term")).rc == 0
    old = R.RawClient(n, version=4)
    assert old.connect(uid("term311"), version=4).rc == 0
    p = Client(n)
    n.proc.send_signal(signal.SIGTERM)
    for r in raws:
        seen = r.wait_closed(20)
        assert [(x.type, x.rc) for x in seen] == [(R.DISCONNECT, 0x8B)], seen
    assert old.wait_closed(20) == []
    assert p.disconnected.wait(20)
    assert p.disconnect_rc == 0x8B
    p.c.loop_stop()
    assert n.proc.wait(timeout=20) == 0
    assert n.wait_log("event=stopping")


def test_sigint_exits_0(node_factory):
    n = node_factory()
    with R.RawClient(n) as r:
        assert r.connect(uid("int")).rc == 0
        n.proc.send_signal(signal.SIGINT)
        seen = r.wait_closed(20)
        assert [(x.type, x.rc) for x in seen] == [(R.DISCONNECT, 0x8B)], seen
    assert n.proc.wait(timeout=20) == 0


def test_only_a_worker_that_closed_connections_lingers_at_stop(node_factory):
    """At stop a worker that closes connections gives their goodbyes a
    moment to reach the sockets; one that closes none has nothing to flush
    and exits at once."""
    n = node_factory("--workers", "2", "--log-level", "debug")
    with R.RawClient(n) as r:
        assert r.connect(uid("linger")).rc == 0
        n.proc.send_signal(signal.SIGINT)
        seen = r.wait_closed(20)
        assert [(x.type, x.rc) for x in seen] == [(R.DISCONNECT, 0x8B)], seen
    assert n.proc.wait(timeout=20) == 0
    assert n.wait_log("event=stopped")
    lines = [line for line in n.log().splitlines() if "event=worker_stopping" in line]
    assert len(lines) == 2, lines
    assert sorted(line.split("linger_ms=")[1].split()[0] for line in lines) == ["0", "200"], lines


def test_max_connections(node_factory):
    n = node_factory("--max-connections", "2", "--workers", "2")
    a, b = R.RawClient(n), R.RawClient(n)
    assert a.connect(uid("mc")).rc == 0
    assert b.connect(uid("mc")).rc == 0
    c = R.RawClient(n)
    try:
        c.send(R.connect(uid("mc")))
    except OSError:
        pass
    seen = c.wait_closed(10) if not c.closed else []
    assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen
    assert n.wait_log("event=refused")
    a.close()
    # A slot frees up.
    for _ in range(100):
        d = R.RawClient(n)
        try:
            if d.connect(uid("mc")).rc == 0:
                break
        except (R.Closed, OSError):
            pass
        finally:
            d.close()
    else:
        raise AssertionError("never accepted again after a slot was freed")
    b.close()


def test_log_format_json(node_factory):
    n = node_factory("--log-format", "json")
    with Client(n):
        pass
    assert n.wait_log("connect")
    lines = [l for l in n.log().splitlines() if l.strip()]
    assert lines
    for l in lines:
        json.loads(l)


def test_log_format_logfmt(node_factory):
    n = node_factory("--log-format", "logfmt")
    with Client(n):
        pass
    assert n.wait_log("event=connect")


def test_bind_and_node_id_in_sys(node_factory):
    n = node_factory("--node-id", "test-node-7", "--sys-interval", "1")
    with Client(n) as c:
        c.subscribe("$SYS/broker/version", 0)
        assert c.get().payload.startswith(b"shoal")
    assert n.wait_log("test-node-7")


@pytest.mark.parametrize("strategy", ["round-robin", "random", "sticky", "hash-by-client-id", "hash-by-topic"])
def test_shared_strategies_deliver_once(node_factory, strategy):
    n = node_factory("--shared-strategy", strategy)
    t = uid("ss")
    members = [Client(n) for _ in range(3)]
    try:
        for m in members:
            m.subscribe("$share/g/" + t, 1)
        with Client(n) as pub:
            for i in range(12):
                pub.publish(t, b"%d" % i, qos=1)
        ids = []
        import time
        deadline = time.time() + 15
        while len(ids) < 12:
            assert time.time() < deadline, ids
            for m in members:
                try:
                    ids.append(int(m.messages.get(timeout=0.05).payload))
                except Exception:
                    pass
        assert sorted(ids) == list(range(12))
        for m in members:
            m.none(0.2)
    finally:
        for m in members:
            m.disconnect()


@pytest.mark.parametrize("flag", ["--shared-strategy", "--log-format"])
def test_invalid_enum_values(flag):
    r = run(flag, "bogus")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert flag in r.stderr and "bogus" in r.stderr
