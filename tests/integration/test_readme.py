# SPDX-License-Identifier: Apache-2.0
"""The README's flag tables and `shoal --help` list the same flags.

A flag table is a markdown table whose header's first cell is "flag"; every
`--name` in the first cell of its rows counts (a row may name several, e.g.
"`--redis-tls-cert`, `--redis-tls-key`"). --help and --version are not
configuration and are left out.
"""
import os
import re
import subprocess

import pytest

from conftest import SHOAL_BIN

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
NOT_CONFIG = {"--help", "--version"}
FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*")


def help_flags(text):
    """Flags from `shoal --help`: each option line starts with its flag."""
    flags = set()
    for line in text.splitlines():
        m = re.match(r"\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    return flags - NOT_CONFIG


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def readme_flags(text):
    """(flag -> README line numbers) over the rows of every flag table."""
    found = {}
    in_table = False
    for n, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        first = cells(line)[0]
        if not in_table:
            in_table = first.lower() == "flag"
            continue
        if re.fullmatch(r":?-+:?", first):
            continue  # the |---| separator row
        for flag in FLAG.findall(first):
            found.setdefault(flag, []).append(n)
    return found


def test_parsers_see_what_they_should():
    # The checks below are only as good as these two parsers: show that they
    # find flags (and only flags) in the shapes the two texts use.
    assert help_flags("  --max-qos N        highest QoS [2]\n  -h, --help  show\n  --version  v\n"
                      "Usage: shoal [options] --not-a-flag\n") == {"--max-qos"}
    text = ("| path | what |\n|---|---|\n| `--nope` | x |\n\n"
            "| flag | default | meaning |\n|---|---|---|\n| `--a`, `--b-c` | 1 | uses `--d` |\n"
            "not a table\n| `--e` | after the table |\n")
    assert readme_flags(text) == {"--a": [7], "--b-c": [7]}


def test_readme_flag_tables_match_help():
    out = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    in_help = help_flags(out.stdout)
    assert len(in_help) > 20, "parsed too few flags from shoal --help:\n" + out.stdout
    with open(README, encoding="utf-8") as f:
        in_readme = readme_flags(f.read())

    missing = sorted(in_help - in_readme.keys())
    extra = sorted(in_readme.keys() - in_help)
    twice = sorted(f for f, lines in in_readme.items() if len(lines) > 1)
    problems = []
    if missing:
        problems.append("in `shoal --help` but in no README flag table (add a row): " + ", ".join(missing))
    if extra:
        problems.append("in a README flag table but not in `shoal --help` (remove or rename the row): " +
                        ", ".join("%s (line %s)" % (f, in_readme[f][0]) for f in extra))
    if twice:
        problems.append("in more than one README flag-table row (keep one): " +
                        ", ".join("%s (lines %s)" % (f, ", ".join(map(str, in_readme[f]))) for f in twice))
    if problems:
        pytest.fail("README.md and `%s --help` disagree:\n  " % SHOAL_BIN + "\n  ".join(problems), pytrace=False)
