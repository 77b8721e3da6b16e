# SPDX-License-Identifier: Apache-2.0
"""deploy/Dockerfile, checked without a container engine (there is none here).

The Dockerfile is parsed; its build stage's cmake commands run as written in
a scratch build directory (build-image/ beside the source), and the runtime
stage must install a Debian package for every shared library the binary
they build needs (ldd, mapped to packages with dpkg -S); the build stage must
install the -dev package of each library the binary links directly. The
image itself is never built here.
"""
import os
import re
import shlex
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
DOCKERFILE = os.path.join(ROOT, "deploy/Dockerfile")
SCRATCH = os.path.join(ROOT, "build-image")
# In bookworm-slim already, and never a separate install.
BASE_PACKAGES = {"libc6"}


def parse(path):
    """[(INSTRUCTION, arguments)] with continuations joined, comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if cur and line.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    assert not cur, "the file ends inside a continued line"
    return out


def stages(instrs):
    result = []
    for word, rest in instrs:
        if word == "FROM":
            result.append({"from": rest, "instrs": []})
        elif result:
            result[-1]["instrs"].append((word, rest))
    return result


def args_of(instrs):
    return dict(re.match(r"(\w+)=(.*)", rest).groups() for word, rest in instrs if word == "ARG" and "=" in rest)


def apt_packages(stage):
    pkgs = []
    for word, rest in stage["instrs"]:
        if word == "RUN":
            for cmd in rest.split("&&"):
                toks = shlex.split(cmd)
                if toks[:2] == ["apt-get", "install"]:
                    pkgs += [t for t in toks[2:] if not t.startswith("-")]
    return pkgs


@pytest.fixture(scope="module")
def dockerfile():
    instrs = parse(DOCKERFILE)
    return instrs, stages(instrs)


def test_stages_and_runtime_settings(dockerfile):
    instrs, (build, run) = dockerfile
    known = {"FROM", "RUN", "COPY", "WORKDIR", "ARG", "ENV", "LABEL", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert {w for w, _ in instrs} <= known
    release = args_of(instrs)["DEBIAN_RELEASE"]
    assert release == "bookworm"
    assert build["from"] == "debian:${DEBIAN_RELEASE} AS build"
    assert run["from"] == "debian:${DEBIAN_RELEASE}-slim"
    words = [w for w, _ in run["instrs"]]
    assert "HEALTHCHECK" not in [w for w, _ in instrs]  # kubelet probes do that
    assert dict(run["instrs"])["ENTRYPOINT"] == '["shoal"]'
    assert sorted(dict(run["instrs"])["EXPOSE"].split()) == sorted(["1883", "8883", "8083", "8084", "8080"])
    # A fixed, non-root numeric user that exists in the image, the chart's runAsUser.
    user = dict(run["instrs"])["USER"]
    assert user == "10001:10001"
    assert any(w == "RUN" and "--uid 10001" in r and "--gid 10001" in r for w, r in run["instrs"])
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    # Only the binary comes from the build stage.
    copies = [r for w, r in run["instrs"] if w == "COPY"]
    assert copies == ["--from=build /src/build/node/shoal /usr/local/bin/shoal"]


def test_oci_labels(dockerfile):
    instrs, (_, run) = dockerfile
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"',
                             " ".join(r for w, r in run["instrs"] if w == "LABEL")))
    for key in ("title", "description", "version", "licenses", "base.name"):
        assert "org.opencontainers.image." + key in labels, key
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        version = re.search(r"project\(shoal VERSION ([0-9.]+)", f.read()).group(1)
    assert args_of(run["instrs"])["VERSION"] == version


def test_copied_sources_are_the_build_inputs(dockerfile):
    _, (build, _) = dockerfile
    copied = set()
    for w, r in build["instrs"]:
        if w == "COPY":
            copied.add(r.split()[0].rstrip("/"))
    # Every directory the top-level CMakeLists.txt adds (and includes) is copied.
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        text = f.read()
    needed = set(re.findall(r"add_subdirectory\((\w+)\)", text)) | {"CMakeLists.txt", "cmake"}
    assert needed <= copied, needed - copied


def dpkg_owner(path):
    # The path itself first: a linker name (libx.so) is a symlink owned by
    # the -dev package, its target by the library's.
    for p in (path, path.replace("/lib/", "/usr/lib/", 1), os.path.realpath(path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def test_build_stage_builds_and_runtime_has_every_library(dockerfile):
    _, (build, run) = dockerfile
    cmds = []
    for w, r in build["instrs"]:
        if w == "RUN":
            cmds += [c.strip() for c in r.split("&&") if c.strip().startswith(("cmake", "strip"))]
    assert [c.split()[0] for c in cmds] == ["cmake", "cmake", "strip"]
    env = {**os.environ, "CMAKE_C_COMPILER_LAUNCHER": os.environ.get("CMAKE_C_COMPILER_LAUNCHER", "")}
    for c in cmds:
        # The image's /src is this checkout; its build dir is the scratch one.
        c = c.replace("/src/build", SCRATCH).replace("/src", ROOT).replace('"$(nproc)"', "2")
        r = subprocess.run(shlex.split(c), cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, "%s\n%s%s" % (c, r.stdout[-3000:], r.stderr[-3000:])
    binary = os.path.join(SCRATCH, "node/shoal")
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout.startswith("shoal ")

    runtime = set(apt_packages(run))
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M)
    assert libs, ldd
    missing = {}
    for name, path in libs:
        pkg = dpkg_owner(path)
        assert pkg, "no Debian package owns %s" % path
        pkg = pkg.split(":")[0]
        if pkg not in runtime and pkg not in BASE_PACKAGES:
            missing[name] = pkg
    assert missing == {}, "the runtime stage does not install %s" % missing
    # Nothing installed that the binary does not need, but the CA bundle.
    owners = {dpkg_owner(p).split(":")[0] for _, p in libs}
    assert runtime - owners == {"ca-certificates"}

    # The -dev package of each library linked directly is in the build stage.
    dev = set(apt_packages(build))
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout)
    lacking = {}
    for soname in needed:
        stem = soname.split(".so")[0]
        linker_name = os.path.join("/usr/lib/x86_64-linux-gnu", stem + ".so")
        owner = dpkg_owner(linker_name) if os.path.exists(linker_name) else None
        if owner and owner.split(":")[0] not in dev and owner.split(":")[0] != "libc6-dev":
            lacking[soname] = owner
    assert lacking == {}, "the build stage does not install %s" % lacking
