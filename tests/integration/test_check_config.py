# SPDX-License-Identifier: Apache-2.0
"""shoal --check-config FILE: the config file checked as a start would read
it, every bad line reported with its number, exit 0 or 1, nothing started."""
import os
import socket
import subprocess

from conftest import SHOAL_BIN


def check(*args, env=None):
    # No SHOAL_* variable from the caller's shell: they would change the result.
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run([SHOAL_BIN, "--check-config", *args], capture_output=True, text=True, timeout=20,
                          env={**base, **(env or {})})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_good_file_passes_and_starts_nothing(tmp_path):
    port, http_port = free_port(), free_port()
    f = tmp_path / "shoal.conf"
    f.write_text("# comment\n\nbind 127.0.0.1\nport = %d\nhttp-port %d\nmax-qos 1\n"
                 "tls-port 8883\ntls-cert /nonexistent/tls.crt\ntls-key /nonexistent/tls.key\n"
                 "password-file /nonexistent/passwd\nlog-format json\n" % (port, http_port))
    r = check(str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "shoal: %s: ok" % f
    assert r.stderr == ""
    # Nothing listened: both ports are still free to bind.
    for p in (port, http_port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    f = tmp_path / "bad.conf"
    f.write_text("max-qos 1\nno-such-key 3\nport 70000\n# fine\nretain-available maybe\nmax-inflight 8\n")
    r = check(str(f))
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 3, r.stderr
    assert "%s:2: unknown key 'no-such-key'" % f in lines[0]
    assert "%s:3: port must be an integer" % f in lines[1]
    assert "%s:5: retain-available must be true or false" % f in lines[2]


def test_cross_option_rules_apply(tmp_path):
    f = tmp_path / "half.conf"
    f.write_text("redis redis://redis:6379\n")
    r = check(str(f))
    assert r.returncode == 1 and "--redis and --kafka go together" in r.stderr
    # Flags after the file take part, as they would on a start.
    assert check(str(f), "--kafka", "kafka:9092").returncode == 0
    f.write_text("metrics-auth true\n")
    r = check(str(f))
    assert r.returncode == 1 and "--metrics-auth needs --admin-token" in r.stderr
    # The environment counts too: the chart passes the admin token that way.
    assert check(str(f), env={"SHOAL_ADMIN_TOKEN": "t0ken"}).returncode == 0
    for bad in ("log-level loud\n", "log-format yaml\n", "shared-strategy first\n", "kafka-acks 2\n",
                "ws-path mqtt\n", "allow-anonymous perhaps\n"):
        f.write_text(bad)
        r = check(str(f))
        assert r.returncode == 1, bad
        assert r.stderr.startswith("shoal: "), r.stderr


def test_missing_or_unreadable_file(tmp_path):
    r = check(str(tmp_path / "nope.conf"))
    assert r.returncode == 1 and "nope.conf" in r.stderr
    r = subprocess.run([SHOAL_BIN, "--check-config"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "--check-config needs a file" in r.stderr


def test_help_lists_it():
    r = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=20)
    assert "--check-config FILE" in r.stdout
