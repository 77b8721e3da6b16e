# SPDX-License-Identifier: Apache-2.0
"""The node reaching a real KRaft Kafka over TLS (mutual TLS) and SASL_SSL
(SCRAM-SHA-256, PLAIN): --kafka-security-protocol, --kafka-tls-*,
--kafka-sasl-*. One Kafka with every listener is started per module; the
certificates are made with openssl in the test's tmp dir."""
import ctypes
import ctypes.util
import os
import subprocess
import time
import types

import pytest

from certs import make_ca, make_cert
from conftest import SHOAL_BIN
from pahoclient import Client, uid
from test_cluster import WAIT, free_port, http_get, metric, run_env, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
SCRAM_USER, SCRAM_PASSWORD = "shoal-scram", "scram-Secret-4711"
PLAIN_USER, PLAIN_PASSWORD = "shoal-plain", "plain-Secret-0815"


def pem_keystore(d, cert, key):
    """Kafka's PEM keystore: the private key, then the certificate."""
    path = os.path.join(d, "server-keystore.pem")
    with open(path, "w") as out:
        for f in (key, cert):
            with open(f) as src:
                out.write(src.read())
    return path


@pytest.fixture(scope="module")
def kafka_tls(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("kafka-pki"))
    k = types.SimpleNamespace()
    k.ca = make_ca(d, "kafkaca")
    server_cert, server_key = make_cert(d, "kafkaca", "broker", "localhost", True)
    k.client_cert, k.client_key = make_cert(d, "kafkaca", "node", "shoal-node", False)
    k.other_ca = make_ca(d, "otherca")
    k.dir = d
    plain_port, cport, ssl_port, sasl_port = free_port(), free_port(), free_port(), free_port()
    props = os.path.join(d, "tls.properties")
    with open(props, "w") as f:
        f.write("\n".join([
            "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d,SSL://127.0.0.1:%d,"
            "SASL_SSL://127.0.0.1:%d" % (plain_port, cport, ssl_port, sasl_port),
            "advertised.listeners=PLAINTEXT://127.0.0.1:%d,SSL://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d"
            % (plain_port, ssl_port, sasl_port),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
            "ssl.keystore.type=PEM",
            "ssl.keystore.location=" + pem_keystore(d, server_cert, server_key),
            "ssl.truststore.type=PEM",
            "ssl.truststore.location=" + k.ca,
            # The SSL listener wants a client certificate (mutual TLS); SASL_SSL does not.
            "listener.name.ssl.ssl.client.auth=required",
            "sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";'
            % (PLAIN_USER, PLAIN_PASSWORD),
            ""]))
    k.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(free_port())])
    try:
        k.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--port", str(plain_port),
                           "--controller-port", str(cport), "--server-config", props,
                           "--add-scram", "SCRAM-SHA-256=[name=%s,password=%s]" % (SCRAM_USER, SCRAM_PASSWORD)])
    except BaseException:
        subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", k.redis["REDIS_DIR"]], timeout=60)
        raise
    k.ssl = "127.0.0.1:%d" % ssl_port
    k.sasl_ssl = "127.0.0.1:%d" % sasl_port
    yield k
    subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", k.kafka["KAFKA_DIR"]], check=True,
                   capture_output=True, timeout=120)
    subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", k.redis["REDIS_DIR"]], check=True,
                   capture_output=True, timeout=60)


def password_file(k, name, password):
    path = os.path.join(k.dir, name)
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    return path


def node_args(k, prefix, name, *security):
    return ["--workers", "2", "--node-id", name, "--redis", k.redis["REDIS_URL"], "--kafka-replication", "1",
            "--kafka-partitions", "2", "--kafka-topic-prefix", prefix, "--cluster-heartbeat", "300", *security]


def mtls(k):
    return ["--kafka", k.ssl, "--kafka-security-protocol", "ssl", "--kafka-tls-ca", k.ca,
            "--kafka-tls-cert", k.client_cert, "--kafka-tls-key", k.client_key]


def sasl(k, mechanism="PLAIN", password=PLAIN_PASSWORD, ca=None):
    user = PLAIN_USER if mechanism == "PLAIN" else SCRAM_USER
    return ["--kafka", k.sasl_ssl, "--kafka-security-protocol", "sasl_ssl", "--kafka-tls-ca", ca or k.ca,
            "--kafka-sasl-mechanism", mechanism, "--kafka-sasl-username", user,
            "--kafka-sasl-password-file", password_file(k, uid("pw"), password)]


def librdkafka_version():
    """The librdkafka the node links (the system's): rd_kafka_version()."""
    lib = ctypes.CDLL(ctypes.util.find_library("rdkafka") or "librdkafka.so.1")
    return lib.rd_kafka_version()


def test_message_crosses_nodes_over_mutual_tls_and_sasl_ssl(kafka_tls, node_factory):
    k = kafka_tls
    prefix = uid("t") + "."
    n1 = node_factory(*node_args(k, prefix, uid("ssl"), *mtls(k)))
    # SASL PLAIN over TLS; the password file named by the environment, the
    # protocol and mechanism in other cases than librdkafka's.
    plain_pw = password_file(k, uid("plainpw"), PLAIN_PASSWORD)
    n2 = node_factory(*node_args(k, prefix, uid("plain"), "--kafka", k.sasl_ssl, "--kafka-security-protocol",
                                 "SASL_SSL", "--kafka-tls-ca", k.ca, "--kafka-sasl-mechanism", "plain",
                                 "--kafka-sasl-username", PLAIN_USER),
                      env={"SHOAL_KAFKA_SASL_PASSWORD_FILE": plain_pw})
    for n in (n1, n2):
        wait_for(lambda: http_get(n, "/health/ready")[0] == 200, "ready over TLS/SASL")
        assert metric(n, "shoal_backend_up", backend="kafka") == 1
    assert "event=kafka_security protocol=ssl" in n1.log() and "client_cert=yes" in n1.log()
    assert "protocol=sasl_ssl" in n2.log() and "sasl_mechanism=PLAIN" in n2.log()
    assert "event=kafka_ready brokers=" + k.ssl in n1.log(), n1.log()[-3000:]
    assert "event=kafka_ready brokers=" + k.sasl_ssl in n2.log(), n2.log()[-3000:]
    topic = uid("over-tls")
    sub = Client(n2)
    sub.subscribe(topic, qos=1)
    Client(n1).publish(topic, b"via-ssl", qos=1)
    assert sub.get(WAIT).payload == b"via-ssl"
    back = Client(n1)
    back.subscribe(topic + "/back", qos=1)
    Client(n2).publish(topic + "/back", b"via-sasl-ssl", qos=1)
    assert back.get(WAIT).payload == b"via-sasl-ssl"
    for n in (n1, n2):
        log = n.log()
        assert "event=kafka_auth_failed" not in log
        assert PLAIN_PASSWORD not in log


def start_refused(k, *security):
    """Start a node that Kafka refuses; it must give up with a reason, not
    hang in retries and not crash. Returns (seconds taken, stderr)."""
    t0 = time.monotonic()
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1", "--log-level", "debug",
                        *node_args(k, uid("t") + ".", uid("bad"), *security)],
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert "READY" not in r.stdout, r.stdout
    # Exit 1 with event=start_failed: not a signal, no memory error.
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "event=start_failed" in r.stderr, r.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr[-6000:]
    # A failed start frees what it opened (node/main.c): an ASan build
    # lists no leak, the backplane's (cluster/, librdkafka) included.
    assert "ERROR: LeakSanitizer" not in r.stderr, r.stderr[-6000:]
    assert "event=kafka_unreachable reason=auth-failed" in r.stderr, r.stderr[-3000:]
    return took, r.stderr


def test_wrong_ca_is_a_clear_refusal(kafka_tls):
    took, err = start_refused(kafka_tls, *sasl(kafka_tls, ca=kafka_tls.other_ca))
    line = next(l for l in err.splitlines() if "event=kafka_auth_failed" in l)
    assert "err=_SSL" in line and "certificate verify failed" in line, line
    print("refused (wrong CA) after %.1f s" % took)


def test_wrong_password_is_a_clear_refusal_and_never_logged(kafka_tls):
    took, err = start_refused(kafka_tls, *sasl(kafka_tls, password="not-the-Password-99"))
    line = next(l for l in err.splitlines() if "event=kafka_auth_failed" in l)
    assert "err=_AUTHENTICATION" in line and "protocol=sasl_ssl" in line, line
    assert "not-the-Password-99" not in err and PLAIN_PASSWORD not in err
    print("refused (wrong password) after %.1f s" % took)


def test_scram_sha_256(kafka_tls, node_factory):
    """SCRAM-SHA-256 with the user made by kafka-storage format --add-scram.
    Kafka 4.x refuses SCRAM from librdkafka before 2.6.1 (librdkafka#4895,
    Debian 12 has 2.0.2): then the node says why and gives up; with a
    fixed librdkafka the login works and messages cross."""
    k = kafka_tls
    if librdkafka_version() < 0x020601ff:
        took, err = start_refused(k, *sasl(k, "SCRAM-SHA-256", SCRAM_PASSWORD))
        assert "event=kafka_security_scram_old" in err, err[-3000:]
        assert SCRAM_PASSWORD not in err
        return
    prefix = uid("t") + "."
    n1 = node_factory(*node_args(k, prefix, uid("scram1"), *sasl(k, "SCRAM-SHA-256", SCRAM_PASSWORD)))
    n2 = node_factory(*node_args(k, prefix, uid("scram2"), *sasl(k, "SCRAM-SHA-256", SCRAM_PASSWORD)))
    for n in (n1, n2):
        wait_for(lambda: http_get(n, "/health/ready")[0] == 200, "ready over SCRAM")
    topic = uid("scram")
    sub = Client(n2)
    sub.subscribe(topic, qos=1)
    Client(n1).publish(topic, b"via-scram", qos=1)
    assert sub.get(WAIT).payload == b"via-scram"
    assert SCRAM_PASSWORD not in n1.log() + n2.log()


def test_missing_client_certificate_is_refused_by_the_mtls_listener(kafka_tls):
    k = kafka_tls
    took, err = start_refused(k, "--kafka", k.ssl, "--kafka-security-protocol", "ssl", "--kafka-tls-ca", k.ca)
    line = next(l for l in err.splitlines() if "event=kafka_auth_failed" in l)
    assert "bad certificate" in line or "certificate required" in line, line
    print("refused (no client certificate) after %.1f s" % took)


def test_unreadable_files_and_bad_combinations_stop_the_start(kafka_tls, tmp_path):
    k = kafka_tls
    missing = str(tmp_path / "missing-ca.pem")
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1",
                        *node_args(k, uid("t") + ".", uid("bad"), "--kafka", k.ssl, "--kafka-security-protocol",
                                   "ssl", "--kafka-tls-ca", missing)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "READY" not in r.stdout
    assert "event=kafka_security_error option=kafka-tls-ca" in r.stderr and "missing-ca.pem" in r.stderr, r.stderr
    # A certificate without its key: refused before anything is opened, by a
    # start (exit 2) and by --check-config (exit 1).
    conf = tmp_path / "shoal.conf"
    conf.write_text("redis redis://127.0.0.1:1\nkafka 127.0.0.1:1\nkafka-security-protocol ssl\n"
                    "kafka-tls-cert %s\n" % k.client_cert)
    r = subprocess.run([SHOAL_BIN, "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--kafka-tls-cert and --kafka-tls-key go together" in r.stderr, r.stderr
    r = subprocess.run([SHOAL_BIN, "--check-config", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--kafka-tls-cert and --kafka-tls-key go together" in r.stderr, r.stderr
