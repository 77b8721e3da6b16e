# SPDX-License-Identifier: Apache-2.0
"""A node with its wall clock off: libfaketime (LD_PRELOAD; Debian
libfaketime, installed by ./tests/run) shifts CLOCK_REALTIME, with
CLOCK_MONOTONIC left alone, and clockshim.c (compiled here once, preloaded
first) keeps librdkafka's timed waits on the real clock (see its comment for
why libfaketime alone stops librdkafka)."""
import hashlib
import os
import shutil
import subprocess
import tempfile

LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SHIM_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clockshim.c")


def missing():
    """Why a faked clock cannot run here (None: it can)."""
    if not os.path.exists(LIB):
        return "no %s (Debian package libfaketime; ./tests/run installs faketime)" % LIB
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "no C compiler for %s" % SHIM_SRC
    return None


def shim():
    """The compiled shim's path (built once per source version)."""
    with open(SHIM_SRC, "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:12]
    out = os.path.join(tempfile.gettempdir(), "shoal-clockshim-%d-%s.so" % (os.getuid(), tag))
    if not os.path.exists(out):
        tmp = out + ".%d" % os.getpid()
        subprocess.run([shutil.which("cc") or "gcc", "-shared", "-fPIC", "-O2", "-o", tmp, SHIM_SRC, "-ldl"],
                       check=True, capture_output=True, timeout=120)
        os.replace(tmp, out)
    return out


def env(offset):
    """Environment for a process whose wall clock is `offset` off (libfaketime
    syntax: "-1h", "+1800")."""
    # An ASan build checks that its runtime comes first; these two preloads
    # only wrap clock functions.
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": "%s:%s" % (shim(), LIB), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
