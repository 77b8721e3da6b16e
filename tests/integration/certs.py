# SPDX-License-Identifier: Apache-2.0
"""Certificates for tests, made with the openssl command at test time (keys
are never committed)."""
import os
import shutil
import subprocess


def run(*cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)


def make_ca(d, name):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".crt", "-days", "2", "-subj", "/CN=" + name,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash", cwd=d)
    return os.path.join(d, name + ".crt")


def make_cert(d, ca, name, cn, server):
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        if server:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
        "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", ext, cwd=d)
    return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")


def rotate_server_cert(d, cert, key):
    """Replace the server certificate and key files a node was started with
    by ones from a new CA 'ca2' (made in d); returns the new CA's file."""
    new_ca = make_ca(d, "ca2")
    new_cert, new_key = make_cert(d, "ca2", "server2", "localhost", True)
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    return new_ca
